"""The judge core: typed test specs, limits and verdicts, output comparison, code extraction, the judge.

Stdlib only (no pydantic, no HTTP, no Docker): :mod:`~sandbox.core.spec` (test specs),
:mod:`~sandbox.core.verdicts` (verdict enum, per-test and per-submission results),
:mod:`~sandbox.core.compare` (the ``lcb`` and ``lenient`` output comparisons),
:mod:`~sandbox.core.extract` (code out of a completion), :mod:`~sandbox.core.errors` (the
package's exception hierarchy) and :mod:`~sandbox.core.judge` (spec + code -> verdict, over
any :class:`~sandbox.core.isolation.IsolationBackend`).
"""
