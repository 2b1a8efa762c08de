r"""A synthetic task where partial thinking often carries the answer: sums, reached early, then verified.

The second CPU miniature of Elastic Reasoning (arXiv 2505.05315), beside
:mod:`er_tools.synthetic_arith`, whose problems, grading and tiny model it shares. The
problems are the same sums (``What is 4 + 2 + 5?``); the fine-tuning traces are one
kind only, shaped like real reasoning traces that reach the result long before they
end and then check it:

``4 + 2 + 5 = 6 + 5 = 11. Wait, let me verify: 5 + 2 = 7, 7 + 4 = 11. Yes, 11.``
``So the answer is 11.`` then ``</think>`` and ``The answer is \boxed{11}.``

The first pass (:func:`er_tools.synthetic_arith.short_trace`'s running totals) ends in
the answer after about 20 tokens; each of the 1 to ``max_checks`` verification rounds
(:class:`VerifyTaskConfig`) re-adds the numbers in another order (about 25 tokens).
Thinking cut after the first pass therefore *contains* the answer, but the start model
has only ever seen complete traces, where the boxed answer repeats the statement just
before ``</think>``: cut in the middle of a check, after a forced ``</think>``, it has
never learned which of the numbers above to give. Budget-constrained GRPO can teach it
(the reward of a cut rollout depends only on that choice); plain GRPO never sees a cut.
``benchmarks/er_cut.py`` runs that experiment.

Example:
    >>> print(verify_trace([4, 2, 5], checks=1))
    4 + 2 + 5 = 6 + 5 = 11. Wait, let me verify: 5 + 2 = 7, 7 + 4 = 11. Yes, 11. So the answer is 11.
    </think>
    <BLANKLINE>
    The answer is \boxed{11}.
    >>> first_pass_text([4, 2, 5])
    '4 + 2 + 5 = 6 + 5 = 11.'

"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from er_env.data.schema import Problem
from er_env.data.templates import render_prompt
from er_tools.synthetic_arith import START_MODEL_SETTINGS as _ARITH_SETTINGS
from er_tools.synthetic_arith import problem_terms, short_trace, train_start_model
from er_tools.tiny_model import THINK_END

__all__ = [
    "START_MODEL_SETTINGS",
    "VerifyTaskConfig",
    "build_start_model",
    "check_order",
    "first_pass_text",
    "sft_documents",
    "verify_trace",
]

SOURCE = "synthetic_verify"

#: :class:`~er_tools.tiny_model.TinyModelConfig` settings of the start model: those of
#: :data:`er_tools.synthetic_arith.START_MODEL_SETTINGS` with fewer steps (one trace style to learn)
START_MODEL_SETTINGS: dict[str, Any] = {**_ARITH_SETTINGS, "train_steps": 1200}

_OPENERS = ("Wait, let me verify:", "Let me check again:", "Once more:")


@dataclass(frozen=True)
class VerifyTaskConfig:
    r"""Shape of the fine-tuning traces (the problems are :class:`~er_tools.synthetic_arith.ArithTaskConfig`'s).

    > Parameters that control the traces

    Attributes:
        min_checks: fewest verification rounds after the first pass (>= 1).
        max_checks: most verification rounds (<= 3); each trace draws its count uniformly.
        no_check_fraction: share of traces that state the answer right after the first
            pass, with no verification round (still complete: the conclusion, then
            ``</think>``). A few such traces put the answer format at short positions too;
            without them the start model answered garbage after any forced ``</think>``
            (no ``\boxed{}``), so no cut rollout ever earned reward to learn from.

    """

    min_checks: int = field(default=1, metadata={"help": "Fewest verification rounds after the first pass (>= 1)."})
    max_checks: int = field(default=3, metadata={"help": "Most verification rounds (<= 3), drawn uniformly."})
    no_check_fraction: float = field(default=0.15, metadata={
        "help": "Share of traces with no verification round (the conclusion right after the first pass)."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.no_check_fraction < 1.0:
            raise ValueError(f"no_check_fraction must be in [0, 1), got {self.no_check_fraction!r}.")
        if not 1 <= self.min_checks <= self.max_checks <= len(_OPENERS):
            raise ValueError(f"Need 1 <= min_checks <= max_checks <= {len(_OPENERS)}, got min_checks="
                             f"{self.min_checks}, max_checks={self.max_checks}; set them in that range.")


def check_order(terms: Sequence[int], round_index: int) -> list[int]:
    """The order in which verification round ``round_index`` (0-based) adds the numbers.

    Round 0 adds them in reverse, round 1 starts from the second number, round 2 from
    the last but one: each a cyclic or mirrored order of ``terms``.

    >>> check_order([1, 2, 3], 0), check_order([1, 2, 3], 1), check_order([1, 2, 3], 2)
    ([3, 2, 1], [2, 3, 1], [2, 1, 3])
    """
    t = list(terms)
    if round_index == 0:
        return t[::-1]
    if round_index == 1:
        return t[1:] + t[:1]
    rev = t[::-1]
    return rev[1:] + rev[:1]


def first_pass_text(terms: Sequence[int]) -> str:
    """The first pass of a trace: the running totals, ending in the answer (``4 + 2 + 5 = 6 + 5 = 11.``)."""
    return short_trace(terms).split("\n", 1)[0]


def _round(terms: Sequence[int], i: int) -> str:
    order = check_order(terms, i)
    total, steps = order[0], []
    for t in order[1:]:
        steps.append(f"{total} + {t} = {total + t}")
        total += t
    return f"{_OPENERS[i]} {', '.join(steps)}. Yes, {total}."


def verify_trace(terms: Sequence[int], checks: int) -> str:
    r"""The complete completion: the first pass, ``checks`` verification rounds, the conclusion, the boxed sum.

    Raises:
        ValueError: fewer than two terms, or ``checks`` outside ``0..3``.

    """
    terms = [int(t) for t in terms]
    if not 0 <= checks <= len(_OPENERS):
        raise ValueError(f"checks must be in 0..{len(_OPENERS)}, got {checks!r}.")
    total = sum(terms)
    parts = [first_pass_text(terms)] + [_round(terms, i) for i in range(checks)]
    return " ".join(parts) + f" So the answer is {total}.\n{THINK_END}\n\nThe answer is \\boxed{{{total}}}."


def sft_documents(problems: Sequence[Problem], config: VerifyTaskConfig | None = None, seed: int = 0,
                  tokenizer: Any = None) -> list[str]:
    """Fine-tuning texts: each problem's rendered prompt, a complete :func:`verify_trace`, and EOS.

    Args:
        problems: problems from :func:`er_tools.synthetic_arith.make_problems`.
        config: the traces' shape (default :class:`VerifyTaskConfig`).
        seed: RNG seed of the verification-round counts.
        tokenizer: renders the prompt (default: the tiny model's chat template).

    Returns:
        One document per problem.

    Raises:
        ValueError: a problem without ``metadata["terms"]``.

    """
    from er_tools.demo_model import TemplateOnlyTokenizer
    from er_tools.tiny_model import EOS

    cfg = config or VerifyTaskConfig()
    tok = tokenizer if tokenizer is not None else TemplateOnlyTokenizer()
    rng = random.Random(f"{SOURCE}/sft/{seed}")
    docs = []
    for p in problems:
        checks = 0 if rng.random() < cfg.no_check_fraction else rng.randint(cfg.min_checks, cfg.max_checks)
        docs.append(render_prompt(p, tok)[0] + verify_trace(problem_terms(p), checks) + EOS)
    return docs


def build_start_model(out_dir: str | Path, problems: Sequence[Problem], *, config: VerifyTaskConfig | None = None,
                      seed: int = 0, **overrides: Any) -> Path:
    """Fine-tune the tiny model on complete verify traces of ``problems`` (never a forced ``</think>``).

    Args:
        out_dir: directory to write (a Hugging Face checkpoint + tokenizer).
        problems: fine-tuning problems (repeat them for several documents each).
        config: the traces' shape.
        seed: seed of the trace draws, weights and training order.
        **overrides: :class:`~er_tools.tiny_model.TinyModelConfig` fields replacing
            :data:`START_MODEL_SETTINGS` (e.g. ``train_steps=300`` for a quick model).

    Returns:
        ``out_dir``.

    Raises:
        RuntimeError: the saved tokenizer renders prompts unlike the training texts.

    """
    docs = sft_documents(problems, config, seed)
    return train_start_model(out_dir, problems, docs, seed=seed, **{**START_MODEL_SETTINGS, **overrides})
