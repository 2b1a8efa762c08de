"""The batched rollout driver: N episodes, one backend call per phase for all of them.

This is the path trainers and the demo use. :func:`rollout` renders each problem's
prompt (``er_env.data.templates``), repeats it ``group_size`` times (GRPO groups),
asks the backend for all completions in ONE :meth:`Backend.generate` call (which runs
the thinking phase for the whole batch, forces ``</think>`` where needed and runs the
solution phase for the whole batch, all through :class:`~er_env.budget.BudgetTracker`),
decodes them, and scores them with one batched reward call per task.

The Gymnasium environments (``er_env.envs``) follow the same rules step by step and
use the same helpers here (:func:`decode_completion`, :func:`score_completions`), so
feeding a rollout's sampled tokens (:func:`policy_actions`) into an environment gives
the same completion ids, ``env_mask`` and reward.

Reward failures are never turned into a zero: a grader error (``is_error``) becomes a
record with ``reward = nan``, ``is_error = True`` and the verdict, or raises
:class:`~er_env.rewards.base.RewardError` with ``on_reward_error="raise"``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from er_env.budget import Budget, BudgetedCompletion, SpecialTokens
from er_env.data.schema import Problem
from er_env.data.templates import render_prompt
from er_env.rewards.base import ERROR_REWARD, RewardError, RewardResult, check_on_reward_error, error_result

__all__ = [
    "EpisodeRecord",
    "RewardRouter",
    "decode_completion",
    "policy_actions",
    "rollout",
    "score_completions",
    "write_jsonl",
]



def decode_completion(tokenizer: Any, completion_ids: Sequence[int], eos_ids: Iterable[int] = ()) -> str:
    """The completion text the reward sees.

    Special tokens are kept (``</think>`` must stay so the reward can split thinking
    from solution); one trailing EOS is dropped.

    Args:
        tokenizer: the policy's tokenizer.
        completion_ids: thinking + ``</think>`` + solution ids.
        eos_ids: ids of EOS tokens.

    Returns:
        The decoded text.
    """
    ids = list(completion_ids)
    if ids and ids[-1] in set(eos_ids):
        ids = ids[:-1]
    return tokenizer.decode(ids, skip_special_tokens=False)


def policy_actions(completion: BudgetedCompletion, special: SpecialTokens) -> list[int]:
    """The token stream a policy sampled to produce ``completion``.

    Forced ``</think>`` tokens are removed; where thinking ended by an EOS (dropped
    by the protocol, ``think_finish_reason == "eos"``), that EOS is put back. Feeding
    the result to an environment with the same budget reproduces ``completion``.

    Args:
        completion: a finished record.
        special: the protocol's token ids.

    Returns:
        Token ids, in sampling order.
    """
    out: list[int] = []
    eos = min(special.eos)
    inserted = False
    for tok, forced in zip(completion.completion_ids, completion.forced_mask, strict=True):
        if forced:
            if completion.think_finish_reason == "eos" and not inserted:
                out.append(eos)
                inserted = True
            continue
        out.append(tok)
    return out


class RewardRouter:
    """Routes problems to a reward function per task and scores in batches.

    Args:
        reward_fn: one function for every task, a ``{task: function}`` mapping, or
            ``None`` for ``er_env.rewards.default_reward(task, endpoint=...)``.
        endpoint: reward service URL for the default functions (``None``: in-process).
        on_reward_error: ``"record"`` keeps grader failures as ``is_error`` results;
            ``"raise"`` raises :class:`RewardError`.

    Raises:
        ValueError: an unknown ``on_reward_error``.
    """

    def __init__(self, reward_fn: Any = None, endpoint: str | None = None, on_reward_error: str = "record") -> None:
        check_on_reward_error(on_reward_error, "RewardRouter")
        self._fn = reward_fn
        self._endpoint = endpoint
        self.on_reward_error = on_reward_error
        self._cache: dict[str, Callable[..., list[RewardResult]]] = {}

    def for_task(self, task: str) -> Callable[..., list[RewardResult]]:
        """The reward function for ``task`` (built on first use)."""
        if task in self._cache:
            return self._cache[task]
        if isinstance(self._fn, Mapping):
            if task not in self._fn:
                raise ValueError(f"No reward function for task {task!r}; the mapping has {sorted(self._fn)}.")
            fn = self._fn[task]
        elif self._fn is not None:
            fn = self._fn
        else:
            from er_env.rewards import default_reward

            fn = default_reward(task, endpoint=self._endpoint)
        self._cache[task] = fn
        return fn

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        """Score ``completions[i]`` for ``problems[i]``: one call per task present.

        Raises:
            RewardError: a grader failed and ``on_reward_error == "raise"``, or a
                reward function returned the wrong number of results.
        """
        if len(problems) != len(completions):
            raise ValueError(f"Got {len(problems)} problems but {len(completions)} completions.")
        results: list[RewardResult | None] = [None] * len(problems)
        by_task: dict[str, list[int]] = {}
        for i, p in enumerate(problems):
            by_task.setdefault(p.task, []).append(i)
        for task, idx in by_task.items():
            fn = self.for_task(task)
            batch_p, batch_c = [problems[i] for i in idx], [completions[i] for i in idx]
            try:
                got = list(fn(batch_p, batch_c))
            except RewardError as exc:  # the documented "no verdict" signal; any other exception is a bug
                if self.on_reward_error == "raise":
                    raise
                got = [error_result(f"{type(exc).__name__}: {exc}", kind=type(exc).__name__) for _ in idx]
            if len(got) != len(idx):
                raise RewardError(
                    f"Reward function for {task!r} returned {len(got)} results for {len(idx)} completions."
                )
            for i, res in zip(idx, got, strict=True):
                if res.is_error and self.on_reward_error == "raise":
                    raise RewardError(
                        f"Grader failed on {problems[i].id!r}: verdict {res.verdict!r}, "
                        f"details {dict(res.details)!r:.300}"
                    )
                results[i] = res
        return results  # type: ignore[return-value]


def score_completions(router: RewardRouter, problems: Sequence[Problem], texts: Sequence[str]) -> list[RewardResult]:
    """Batched scoring (see :class:`RewardRouter`)."""
    return router(problems, texts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class EpisodeRecord:
    """One finished episode: problem, prompt, budgeted completion, reward.

    Attributes:
        problem_id: :attr:`Problem.id`.
        task: ``"math"`` or ``"code"``.
        sample_index: index within the problem's group (``0..group_size-1``).
        prompt_text: the chat-templated prompt.
        completion: the backend's :class:`BudgetedCompletion` (ids, logprobs,
            ``env_mask``, ``forced_mask``, counts, finish reasons).
        completion_text: what the reward saw (:func:`decode_completion`).
        reward: the scalar reward; ``nan`` when the grader failed (``is_error``).
        verdict: the reward's verdict (``"correct"``, ``"AC"``, ``"internal_error"``...).
        is_error: the grader failed; do not train on ``reward``.
        reward_details: verdict details from the reward function.
        budget: the budget the episode ran under.
    """

    problem_id: str
    task: str
    sample_index: int
    prompt_text: str
    completion: BudgetedCompletion
    completion_text: str
    reward: float
    verdict: str
    is_error: bool
    reward_details: Mapping[str, Any] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)

    @property
    def prompt_ids(self) -> tuple[int, ...]:
        """The prompt's token ids."""
        return self.completion.prompt_ids

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (``nan`` -> ``None``)."""
        return _jsonable({
            "problem_id": self.problem_id, "task": self.task, "sample_index": self.sample_index,
            "prompt_text": self.prompt_text, "completion_text": self.completion_text,
            "reward": self.reward, "verdict": self.verdict, "is_error": self.is_error,
            "reward_details": dict(self.reward_details),
            "think_budget_tokens": self.budget.think, "solution_budget_tokens": self.budget.solution,
            **self.completion.to_dict(),
        })

    def to_json(self) -> str:
        """One JSON line."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


def make_record(problem: Problem, sample_index: int, prompt_text: str, completion: BudgetedCompletion, text: str,
                result: RewardResult, budget: Budget) -> EpisodeRecord:
    """Build an :class:`EpisodeRecord` (``reward`` is ``nan`` for grader errors)."""
    return EpisodeRecord(
        problem_id=problem.id, task=problem.task, sample_index=sample_index, prompt_text=prompt_text,
        completion=completion, completion_text=text, reward=ERROR_REWARD if result.is_error else float(result.reward),
        verdict=result.verdict, is_error=bool(result.is_error), reward_details=dict(result.details), budget=budget,
    )


def rollout(
    backend: Any,
    problems: Sequence[Problem],
    budget: Budget,
    sampling: Any = None,
    reward_fn: Any = None,
    *,
    group_size: int = 1,
    tokenizer: Any = None,
    template: str | None = None,
    reward_endpoint: str | None = None,
    on_reward_error: str = "record",
    timings: dict[str, float] | None = None,
) -> list[EpisodeRecord]:
    """Run ``len(problems) * group_size`` episodes with one batched backend call.

    Args:
        backend: an :class:`~er_env.backends.base.Backend`.
        problems: the problems (math and code may be mixed).
        budget: thinking/solution budgets.
        sampling: a :class:`~er_env.backends.base.SamplingConfig` (backend default if None).
        reward_fn: one reward function, a ``{task: function}`` mapping, a
            :class:`RewardRouter`, or ``None`` for the default local rewards.
        group_size: samples per problem (GRPO group size); records of one problem
            are adjacent.
        tokenizer: tokenizer for templates and decoding (default: ``backend.tokenizer``).
        template: prompt template name (default per task).
        reward_endpoint: reward service URL for the default rewards.
        on_reward_error: ``"record"`` or ``"raise"``, see :class:`RewardRouter`.
        timings: if given, filled with ``generate_s`` and ``reward_s``.

    Returns:
        One record per episode, problem-major order.

    Raises:
        ValueError: ``group_size`` < 1.
        BackendError: the backend failed or returned the wrong number of completions.
        RewardError: see ``on_reward_error``.
    """
    from er_env.backends.base import BackendError

    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}.")
    tok = tokenizer if tokenizer is not None else getattr(backend, "tokenizer", None)
    if tok is None:
        raise ValueError("rollout needs a tokenizer: pass tokenizer=... or use a backend with .tokenizer.")
    router = (reward_fn if isinstance(reward_fn, RewardRouter)
              else RewardRouter(reward_fn, reward_endpoint, on_reward_error))
    rendered = [render_prompt(p, tok, template) for p in problems]
    flat = [(p, k, rendered[i]) for i, p in enumerate(problems) for k in range(group_size)]
    t0 = time.perf_counter()
    completions = backend.generate([ids for _, _, (_, ids) in flat], budget, sampling)
    t1 = time.perf_counter()
    if len(completions) != len(flat):
        raise BackendError(f"Backend returned {len(completions)} completions for {len(flat)} prompts.")
    eos = backend.special.eos if getattr(backend, "special", None) is not None else ()
    texts = [decode_completion(tok, c.completion_ids, eos) for c in completions]
    results = router([p for p, _, _ in flat], texts)
    if timings is not None:
        timings["generate_s"] = t1 - t0
        timings["reward_s"] = time.perf_counter() - t1
    return [
        make_record(p, k, text_ids[0], c, text, r, budget)
        for (p, k, text_ids), c, text, r in zip(flat, completions, texts, results, strict=True)
    ]


def write_jsonl(records: Iterable[EpisodeRecord], path: str | Path) -> Path:
    """Write records as JSON lines (parent directories are created).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(rec.to_json() + "\n")
    return path
