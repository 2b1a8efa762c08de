"""Configuration dataclasses of the math checker (stdlib only, cheap to import for CLI flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MathCheckerConfig", "EquivalenceConfig"]


@dataclass
class MathCheckerConfig:
    r"""Settings of a :class:`MathChecker`.

    > Parameters that control time and processes

    Attributes:
        timeout_s: hard wall-clock limit of one equivalence check (enforced by killing the worker).
        workers: number of checker worker processes.
        memory_limit_bytes: address-space cap of each worker process (0: none).

    > Parameters that control extraction

    Attributes:
        fallback_to_thinking: use the thinking phase's last box when the solution phase has none.
        answer_fallback: evaluation option (off for training, the paper's boxed rule): when the
            solution phase has no ``\boxed{}``, or the box holds prose (``\boxed{the answer is 105}``)
            that does not match, take the final expression math-verify's own extraction finds there.
        max_answer_chars: a longer extracted answer is judged WRONG without parsing it.

    """

    timeout_s: float = field(default=2.0, metadata={"help": "Hard wall-clock limit of one check, in seconds."})
    workers: int = field(default=2, metadata={"help": "Number of checker worker processes."})
    memory_limit_bytes: int = field(default=4 << 30, metadata={"help": "Address-space cap per worker (0: none)."})
    fallback_to_thinking: bool = field(
        default=False, metadata={"help": "Use the thinking phase's last \\boxed{} when the solution has none."})
    answer_fallback: bool = field(
        default=False, metadata={"help": "Evaluation only: without a \\boxed{} (or with prose in it), use the "
                                         "final expression math-verify finds in the solution phase."})
    max_answer_chars: int = field(
        default=20_000, metadata={"help": "Longer extracted answers are judged wrong without parsing."})

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {self.timeout_s!r}; e.g. --timeout-s 2")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers!r}; e.g. --workers 2")
        if self.memory_limit_bytes < 0 or self.max_answer_chars < 1:
            raise ValueError(f"memory_limit_bytes must be >= 0 and max_answer_chars >= 1, got "
                             f"{self.memory_limit_bytes!r} and {self.max_answer_chars!r}")


@dataclass(frozen=True)
class EquivalenceConfig:
    """How two answers are compared (picklable; sent to each worker with the task).

    > Parameters passed to math-verify

    Attributes:
        float_rounding: decimals math-verify rounds numbers to before comparing.
        numeric_precision: significant digits math-verify evaluates numbers with.

    > Parameters of the numeric fallback and guard

    Attributes:
        rel_tol: two real numbers within this relative difference are equal.
        tiny_abs: the tiny-number guard applies when both numbers are below this magnitude.
        tiny_rel_tol: ...and rejects a math-verify match when they differ by more than this.

    """

    float_rounding: int = 6
    numeric_precision: int = 15
    rel_tol: float = 1e-9
    tiny_abs: float = 1e-3
    tiny_rel_tol: float = 1e-2
