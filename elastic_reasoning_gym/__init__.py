"""verifiers plugin ``elastic-reasoning-gym``: this project's taskset and two-phase harness.

verifiers resolves a plugin id to a top-level package (``elastic-reasoning-gym`` -> this one) that
exports one ``Taskset`` and optionally one ``Harness`` via ``__all__``; both live in
:mod:`er_integrations.verifiers` (which needs ``verifiers==0.4.0``: ``make venv-verifiers``).
"""

from er_integrations.verifiers import ElasticHarness, ElasticTaskset

__all__ = ["ElasticTaskset", "ElasticHarness"]
