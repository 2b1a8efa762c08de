"""Code extraction from a model completion (stdlib only).

Rule (as the Elastic Reasoning paper's evaluation did): the program is the LAST fenced
code block of the solution phase, i.e. of the text after the last ``</think>``. No
``</think>`` means the solution phase is absent (thinking never closed): no code. No fenced
block after it: no code. The judge reports both as ``NO_CODE``, never as a crash.

A block opens with three or more backticks, an optional language tag (``python``, ``py``,
``cpp``; the tag is not checked) and a newline; it closes at the next run of at least as
many backticks that ends a line (so ``print(1)`` followed by three backticks closes, but
``s = '```'`` inside the code does not). An unterminated last block runs to the end of the
text (a completion cut at the solution budget still yields its code).
"""

from __future__ import annotations

import re

__all__ = ["extract_code", "solution_phase", "THINK_END"]

#: the thinking delimiter of the completion format (``thinking </think> solution``): the one definition,
#: used by the code judge, the math checker, the reward clients and the tiny test model
THINK_END = "</think>"
_OPEN = re.compile(r"(?P<fence>`{3,})[ \t]*(?P<lang>[^\s`]*)[^\n`]*\n")


def solution_phase(completion: str, think_end: str = THINK_END) -> str | None:
    """The text after the last ``think_end``, or None when thinking never closed."""
    idx = completion.rfind(think_end)
    return None if idx < 0 else completion[idx + len(think_end):]


def _blocks(text: str) -> list[tuple[str, str]]:
    blocks: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = _OPEN.search(text, pos)
        if start is None:
            return blocks
        fence = start.group("fence")
        body_start = start.end()
        closing = re.compile(r"`{%d,}(?=[ \t]*(?:\n|$))" % len(fence))
        end = closing.search(text, body_start)
        body = text[body_start:end.start() if end else len(text)]
        blocks.append((start.group("lang").lower(), body.rstrip("\n") + "\n" if body.strip() else ""))
        if end is None:
            return blocks
        pos = end.end()


def extract_code(completion: str, require_think_end: bool = True, think_end: str = THINK_END) -> str | None:
    r"""The last fenced code block of the solution phase.

    Args:
        completion: the full model completion (thinking, ``</think>``, solution).
        require_think_end: when True (the paper's rule) a completion without ``think_end``
            has no code; when False the whole text is searched.
        think_end: the end-of-thinking marker.

    Returns:
        The code (with a trailing newline), or None when there is none.

    Example:
        >>> extract_code("plan</think>Here:\n```python\nprint(1)\n```\n")
        'print(1)\n'

    """
    text = solution_phase(completion, think_end)
    if text is None:
        if require_think_end:
            return None
        text = completion
    blocks = [body for _, body in _blocks(text) if body.strip()]
    return blocks[-1] if blocks else None
