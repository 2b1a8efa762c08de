"""Fenced code blocks of README.md and docs/**/*.md, and the ``<!-- not-run: reason -->`` convention.

A fenced block opens with a line starting with three backticks and a language (```python, ```bash) and
closes with a line of three backticks. The line right before the opening fence may be an HTML comment
``<!-- not-run: <reason> -->``: that block is not executed (GPU, hub model, several hosts, commands that
need root); the reason is required.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN_LANGUAGES = ("python", "bash")
NOT_RUN_RE = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*$")
_FENCE_RE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block."""

    page: str  # path relative to the repo root
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    not_run: str | None  # the reason, when the block is marked not-run

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


class MarkerError(ValueError):
    """A not-run marker without a reason, or not right before a fence."""


def pages() -> list[Path]:
    """README.md, then every page under docs/ (sorted)."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` in order.

    Raises:
        MarkerError: a ``not-run`` marker without a reason, or one not followed by a fence.
    """
    rel = str(page.relative_to(REPO))
    lines = page.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "not-run" in line and line.lstrip().startswith("<!--"):
            m = NOT_RUN_RE.match(line.strip())
            if not m or not m.group("reason"):
                raise MarkerError(f"{rel}:{i + 1}: a not-run marker needs a reason: '<!-- not-run: <reason> -->', "
                                  f"got {line.strip()!r}")
            if i + 1 >= len(lines) or not _FENCE_RE.match(lines[i + 1]) or lines[i + 1].strip() == "```":
                raise MarkerError(f"{rel}:{i + 1}: a not-run marker must be the line right before a code fence")
        fence = _FENCE_RE.match(line)
        if fence:
            end = i + 1
            while end < len(lines) and lines[end].rstrip() != "```":
                end += 1
            prev = lines[i - 1].strip() if i else ""
            m = NOT_RUN_RE.match(prev)
            out.append(Block(rel, i + 1, fence.group("lang"), "\n".join(lines[i + 1:end]) + "\n",
                             m.group("reason") if m else None))
            i = end + 1
            continue
        i += 1
    return out


def runnable(page: Path) -> list[Block]:
    """The python and bash blocks of ``page`` that are not marked not-run."""
    return [b for b in blocks(page) if b.language in RUN_LANGUAGES and b.not_run is None]
