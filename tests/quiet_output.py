"""What a user must not see in a command's output: deprecation warnings, weight-loading bars (issue 26).

Python warnings print as ``<file>:<line>: <Category>Warning: <message>``; torch's C++ warnings (DDP's
``find_unused_parameters`` notice) as ``[W...] Warning: ...``; transformers' logger deprecations contain
"deprecated"; DeepSpeed's logger as ``[WARNING] [file.py:line:func] ...``. Default warning filters
apply, i.e. what a user sees.
"""

from __future__ import annotations

import re

NOISE = re.compile(r"\w*Warning: |\bdeprecated\b|find_unused_parameters=True|Loading weights|Writing model shards"
                   r"|^\[\S+ \S+\] \[WARNING\]")


def noise(output: str) -> list[str]:
    """The lines of ``output`` that a quiet command must not print."""
    return [line for line in output.splitlines() if NOISE.search(line)]


def assert_quiet(output: str, what: str) -> None:
    """Fail with the offending lines when ``output`` has any :func:`noise`."""
    lines = noise(output)
    assert not lines, f"{what} printed warnings or loading bars:\n" + "\n".join(lines[:20])
