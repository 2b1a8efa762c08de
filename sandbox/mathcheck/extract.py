r"""Final-answer extraction from model completions (stdlib only, linear time).

The final answer is the content of the last ``\boxed{...}`` (or ``\fbox{...}``) in the
*solution phase*, the text after the last ``</think>``. Braces nest; escaped braces
``\{``/``\}`` are content, not delimiters. A box that never closes (a truncated
completion) is skipped; an empty box is no answer. With nested boxes the outer one wins
and inner ``\boxed{}`` wrappers are removed. ``\boxed 5`` (no braces) is accepted.

Everything here runs in one pass over the text (a brace stack, no recursion, no
backtracking regex), so 100 kB completions and 10^5-deep nesting cost milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbox.core.extract import THINK_END  # the one definition of the completion format

__all__ = ["THINK_END", "Extraction", "extract_answer", "answer_from_prediction", "boxed_answers", "split_top_level",
           "strip_math_delimiters", "is_prose"]


_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BARE_TOKEN_RE = re.compile(r"[ \t]+([^\s{}$\\]+)")
_MATH_DELIMS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_PROSE_RE = re.compile(r"[A-Za-z]{2,}[\s,;:]+[A-Za-z]{2,}")
_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_OPENERS = "([{"
_CLOSERS = ")]}"


@dataclass(frozen=True)
class Extraction:
    """What :func:`extract_answer` found.

    Attributes:
        answer: the final answer text (last box of the chosen phase), or ``None``.
        source: ``"solution"``, ``"thinking"`` (fallback), ``"prediction"`` (a bare
            answer given directly) or ``None`` when nothing was found.
        boxed: every complete, non-empty box of the chosen phase, in order (multi-part
            answers are sometimes written as one box per part).
        reason: why ``answer`` is ``None`` (empty otherwise).

    """

    answer: str | None
    source: str | None = None
    boxed: tuple[str, ...] = ()
    reason: str = ""

    def fallback_text(self, completion: str, think_end: str = THINK_END) -> str | None:
        """The text an evaluation-time fallback extracts from, or ``None`` if there is none.

        That is the box content when it reads as prose (two words or more, LaTeX commands
        aside), else the whole solution phase when it holds no box; ``None`` otherwise.
        """
        if self.answer is not None:
            return self.answer if is_prose(self.answer) else None
        idx = completion.rfind(think_end)
        if idx < 0:
            return None
        solution = completion[idx + len(think_end):].strip()
        return solution or None


def _brace_matches(text: str) -> dict[int, int]:
    """Map each unescaped ``{`` to its matching ``}`` (unmatched ones are absent)."""
    matches: dict[int, int] = {}
    stack: list[int] = []
    for m in re.finditer(r"\\.|[{}]", text, flags=re.DOTALL):
        tok = m.group()
        if tok == "{":
            stack.append(m.start())
        elif tok == "}":
            if stack:
                matches[stack.pop()] = m.start()
    return matches


def _box_spans(text: str) -> list[tuple[int, int, str]]:
    """All complete boxes as ``(start, end, content)``, in order of start."""
    spans: list[tuple[int, int, str]] = []
    matches: dict[int, int] | None = None
    for m in _BOX_RE.finditer(text):
        pos = m.end()
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and text[pos] == "{":
            if matches is None:
                matches = _brace_matches(text)
            close = matches.get(pos)
            if close is not None:
                spans.append((m.start(), close + 1, text[pos + 1:close]))
            continue
        bare = _BARE_TOKEN_RE.match(text, m.end())
        if bare:
            spans.append((m.start(), bare.end(), bare.group(1)))
    return spans


def _unwrap_box(content: str, max_depth: int = 8) -> str:
    r"""``\boxed{\boxed{5}}`` -> ``5`` (up to ``max_depth`` levels, to stay linear)."""
    content = content.strip()
    for _ in range(max_depth):
        if not _BOX_RE.match(content):
            break
        spans = _box_spans(content)
        if not (spans and spans[0][0] == 0 and spans[0][1] == len(content)):
            break
        content = spans[0][2].strip()
    return content


def boxed_answers(text: str) -> list[str]:
    """Contents of the outermost complete, non-empty boxes of ``text``, in order.

    Args:
        text: any text (a solution phase, a whole completion).

    Returns:
        The box contents, stripped; nested boxes count once (the outer one).

    """
    out: list[str] = []
    last_end = -1
    for start, end, content in _box_spans(text):
        if start < last_end:  # inside the previous (outer) box
            continue
        last_end = end
        content = _unwrap_box(content)
        if content:
            out.append(content)
    return out


def extract_answer(completion: str, *, fallback_to_thinking: bool = False, think_end: str = THINK_END) -> Extraction:
    """Take the final answer out of a full completion (thinking, ``</think>``, solution).

    Args:
        completion: the model output.
        fallback_to_thinking: when the solution phase has no box (or there is no
            ``</think>`` at all), use the last box of the thinking phase instead.
        think_end: the tag that closes the thinking phase.

    Returns:
        The :class:`Extraction`; ``answer`` is ``None`` with a ``reason`` when none was found.

    """
    idx = completion.rfind(think_end)
    thinking = completion if idx < 0 else completion[:idx]
    if idx >= 0:
        boxes = boxed_answers(completion[idx + len(think_end):])
        if boxes:
            return Extraction(boxes[-1], "solution", tuple(boxes))
        reason = f"no \\boxed{{}} answer after {think_end}"
    else:
        reason = f"no {think_end}: the solution phase is absent"
    if fallback_to_thinking:
        boxes = boxed_answers(thinking)
        if boxes:
            return Extraction(boxes[-1], "thinking", tuple(boxes))
        reason += " (and none in the thinking phase)"
    return Extraction(None, None, (), reason)


def is_prose(text: str) -> bool:
    r"""Whether ``text`` reads as words (``"the answer is 105"``) rather than a math answer (``"\frac12"``)."""
    return bool(_PROSE_RE.search(_COMMAND_RE.sub(" ", text)))


def strip_math_delimiters(text: str) -> str:
    r"""Remove surrounding ``$``, ``$$``, ``\(..\)`` and ``\[..\]`` delimiters (repeatedly)."""
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for left, right in _MATH_DELIMS:
            if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left):len(text) - len(right)].strip()
                changed = True
                break
    return text


def answer_from_prediction(pred: str) -> Extraction:
    r"""Read a bare predicted answer (as given to ``er math check --pred``).

    A prediction containing a box is reduced to its last box; otherwise the prediction
    (without surrounding ``$``/``\(``/``\[`` delimiters) is the answer itself.

    Args:
        pred: the predicted answer, e.g. ``"\frac12"``, ``"$0.5$"`` or ``"so \boxed{1/2}"``.

    Returns:
        The :class:`Extraction` with ``source="prediction"``.

    """
    boxes = boxed_answers(pred)
    if boxes:
        return Extraction(boxes[-1], "prediction", tuple(boxes))
    answer = strip_math_delimiters(pred)
    if not answer:
        return Extraction(None, None, (), "the prediction is empty")
    return Extraction(answer, "prediction", (answer,))


def split_top_level(text: str, sep: str = ",") -> list[str]:
    r"""Split ``text`` at ``sep`` characters outside any bracket pair.

    Brackets of all kinds count alike, so intervals such as ``[2,5)`` stay whole, as do
    ``\{1,2\}`` and ``\left( 3, \frac{\pi}{2} \right)``.

    Args:
        text: a LaTeX answer such as ``"(1,2), (3,4)"``.
        sep: the single separator character.

    Returns:
        The stripped, non-empty parts (``[text.strip()]`` if there is no top-level separator).

    """
    parts: list[str] = []
    depth = 0
    last = 0
    for i, ch in enumerate(text):
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth = max(depth - 1, 0)
        elif ch == sep and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    parts.append(text[last:])
    return [p.strip() for p in parts if p.strip()]
