"""Poisoned training rows, found when the data loads instead of at step 300.

A row that cannot be trained on is one that cannot be loaded (no gold answer, no
test spec: :func:`er_env.data.load_problems` reports it with its row number), or one
whose problem cannot be graded or rendered: a code problem whose test spec does not
parse (the judge would answer ``internal_error`` for every completion), a prompt the
template cannot render, or a prompt so long that prompt + ``t`` + ``</think>`` + ``s``
exceeds the model's context. :func:`screen_problems` finds the latter kind; what
happens to all of them is ``on_bad_problem``: ``refuse`` (the run does not start; the
error lists the ids and reasons) or ``skip`` (they leave the training set, each
reported once with its id and reason).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

from trainers.config import ConfigError, ERTrainConfig

__all__ = ["BadProblem", "apply_policy", "screen_problems"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadProblem:
    """A problem that cannot be trained on: its id and why."""

    id: str
    reason: str


def screen_problems(problems: Sequence[Any], tokenizer: Any, cfg: ERTrainConfig, context_limit: int | None,
                    end_tokens: int) -> tuple[list[Any], list[BadProblem], list[int]]:
    """Split problems into trainable ones and :class:`BadProblem` records.

    Args:
        problems: loaded :class:`~er_env.data.schema.Problem` objects.
        tokenizer: the policy's tokenizer (prompts are rendered with it).
        cfg: the run's config (template, budgets).
        context_limit: the model's (or vLLM's) context length in tokens; ``None``: unknown.
        end_tokens: tokens of the forced ``</think>``.

    Returns:
        ``(good problems, bad ones, prompt lengths of the good ones)``.

    """
    from er_env.data.templates import render_prompt
    from sandbox.core.errors import SpecError
    from sandbox.core.spec import TestSpec

    good, bad, lengths = [], [], []
    budgets = cfg.think_budget_max + end_tokens + cfg.solution_budget_tokens
    for p in problems:
        if p.task == "code":
            try:
                TestSpec.from_dict(dict(p.tests or {}))
            except SpecError as exc:
                bad.append(BadProblem(p.id, f"malformed tests: {exc}"))
                continue
        elif p.task == "math" and not p.answers:
            bad.append(BadProblem(p.id, "no gold answer"))
            continue
        try:
            n = len(render_prompt(p, tokenizer, cfg.template)[1])
        except Exception as exc:  # noqa: BLE001 - any template failure makes the row unusable; it is reported
            bad.append(BadProblem(p.id, f"prompt cannot be rendered ({type(exc).__name__}: {exc})"))
            continue
        if context_limit is not None and n + budgets > context_limit:
            bad.append(BadProblem(p.id, f"prompt of {n} tokens + budgets {budgets} > context {context_limit}"))
            continue
        good.append(p)
        lengths.append(n)
    return good, bad, lengths


def apply_policy(cfg: ERTrainConfig, good: list[Any], bad: list[BadProblem]) -> list[Any]:
    """``on_bad_problem``: refuse the run, or skip the bad problems (each reported).

    Raises:
        ConfigError: ``refuse`` and there are bad problems, or ``skip`` left none.

    """
    if not bad:
        return good
    listed = "; ".join(f"{b.id!r}: {b.reason}" for b in bad[:10]) + (f"; and {len(bad) - 10} more"
                                                                        if len(bad) > 10 else "")
    if cfg.on_bad_problem == "refuse":
        raise ConfigError(f"{len(bad)} training problem(s) cannot be trained on (on_bad_problem: refuse): {listed}. "
                          "Fix or remove them, or set on_bad_problem: skip to train without them.")
    for b in bad:
        logger.warning("skipping training problem %r: %s (on_bad_problem: skip)", b.id, b.reason)
    print(f"er train: skipped {len(bad)} problem(s) that cannot be trained on: {listed}", flush=True)
    if not good:
        raise ConfigError(f"on_bad_problem: skip left no training problem ({listed}).")
    return good
