"""The one problem schema every loader produces (stdlib only).

Math rows carry gold answers; code rows carry a test spec in the sandbox wire
format (a plain JSON-able dict that ``sandbox.core.spec.TestSpec.from_dict`` parses), so
this module needs nothing from the sandbox package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Problem", "ProblemError", "TASKS"]

TASKS = ("math", "code")


class ProblemError(ValueError):
    """A dataset row cannot be turned into a :class:`Problem`."""


@dataclass(frozen=True)
class Problem:
    """One episode's problem.

    Attributes:
        id: stable identifier (``"<source>/<index or native id>"``).
        task: ``"math"`` or ``"code"``.
        question: the problem statement shown to the model (no template applied).
        answers: math only: gold answers as strings, already unwrapped from the
            dataset's shape (stringified lists, floats as strings, ...).
        answers_required: math only: ``"any"`` (one of ``answers`` suffices) or
            ``"all"`` (a multi-part problem: every part must appear).
        tests: code only: the test spec dict, see ``sandbox.core.spec``.
        source: dataset name (``"aime2024"``, ``"codeforces"``, ``"embedded"``...).
        metadata: anything else worth keeping (difficulty, url, limits...).
    """

    id: str
    task: str
    question: str
    answers: tuple[str, ...] = ()
    answers_required: str = "any"
    tests: Mapping[str, Any] | None = None
    source: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ProblemError(f"Problem {self.id!r}: task must be one of {TASKS}, got {self.task!r}.")
        if not isinstance(self.question, str) or not self.question.strip():
            raise ProblemError(f"Problem {self.id!r}: question must be a non-empty string, got {self.question!r:.80}.")
        if self.task == "math" and not self.answers:
            raise ProblemError(f"Problem {self.id!r}: a math problem needs at least one gold answer.")
        if self.answers_required not in ("any", "all"):
            raise ProblemError(f"Problem {self.id!r}: answers_required must be 'any' or 'all', got "
                               f"{self.answers_required!r}.")
        if self.task == "code" and not self.tests:
            raise ProblemError(f"Problem {self.id!r}: a code problem needs a test spec (tests=...).")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (inverse of :meth:`from_dict`)."""
        return {
            "id": self.id, "task": self.task, "question": self.question, "answers": list(self.answers),
            "answers_required": self.answers_required, "tests": dict(self.tests) if self.tests else None,
            "source": self.source, "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> "Problem":
        """Build a problem from :meth:`to_dict`'s form; a bad row raises :class:`ProblemError`."""
        try:
            return cls(
                id=str(row["id"]), task=row["task"], question=row["question"],
                answers=tuple(str(a) for a in row.get("answers") or ()),
                answers_required=row.get("answers_required", "any"), tests=row.get("tests"),
                source=row.get("source", ""), metadata=row.get("metadata") or {},
            )
        except KeyError as exc:
            raise ProblemError(f"Problem row is missing the field {exc.args[0]!r}: {dict(row)!r:.200}") from None
