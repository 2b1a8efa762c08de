"""Nested budget sweeps: think once up to the largest budget, answer from every cut.

For budgets ``t_1 < ... < t_n`` of one method, an independent sweep generates every
sample's thinking ``n`` times. A nested sweep generates it once, capped at ``t_n``,
and for each smaller ``t_i`` re-plays that thinking through a fresh
:class:`~er_env.budget.BudgetTracker` for ``(t_i, s_i)``: the tracker keeps the
first ``t_i`` tokens (or stops earlier at the policy's own ``</think>`` or EOS),
forces ``</think>`` exactly as a live run would, and only the solution phase is
generated from that cut point.

Why every budget gets exactly the distribution of an independent run:

1. The thinking phase samples token ``k`` from ``pi(. | prompt, x_<k)``; the budget
   only decides *when to stop*, and every stopping rule (``</think>``, EOS, the
   budget, the context) is decided from the tokens up to ``k``. So the first
   ``min(t_i, L)`` tokens of a run capped at ``t_n`` (``L`` its length) have the
   same joint law as a run capped at ``t_i``: truncating a sample of the longer
   process is a sample of the shorter one.
2. Given the cut prefix, an independent run samples its solution from
   ``pi(. | prompt, thinking_<=t_i, </think>)`` with the same cap ``s_i``; the
   nested sweep samples a *fresh* solution from the same conditional (it never
   reuses the longer budget's solution, which was conditioned on a different
   prefix).
3. Hence each budget's (thinking, solution) pair has the independent-run law.
   What differs is the *joint* law across budgets: budgets of one sample share
   their thinking prefix, so their scores are positively correlated. That lowers
   the variance of differences between budgets (a paired design), but the
   per-budget results of one sample are not independent draws and must not be
   pooled as if they were.

Seeds: each solution call gets its own seed (:func:`reseeded`). Reusing the
thinking call's seed would replay the random numbers that drew the thinking, so the
solution would not be a fresh draw given its prefix.

Transitions (s1's final-answer cue, Qwen3's sentence) replace the forced
``</think>`` by other forced text; the argument is unchanged. Plain truncation
(one pass capped at ``t + s``) nests too: a run capped at ``L_i`` is the first
``L_i`` tokens of a run capped at ``L_n``, so no extra tokens are generated at all.

Cost: with ``t = 1k..4k`` and ``s = 1k`` an independent sweep samples at most
``(1+2+3+4)k + 4 * 1k = 14k`` tokens per sample, the nested one at most
``4k + 4 * 1k = 8k`` (43% fewer; more when solutions end early). Solution calls
re-encode their prefix (prefill), which is cheap next to decoding.

Where the longer run ended before ``t_i`` for a reason that is not a protocol
decision (the model context filled up), the replay cannot decide ``t_i``; such
samples are generated independently (``fallbacks`` counts them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

from er_env.budget import Budget, BudgetedCompletion, BudgetTracker, Phase

__all__ = ["Generation", "NestedStats", "from_completion", "nested_phased", "nested_truncation", "reseeded",
           "thinking_stream"]


@dataclass(frozen=True)
class Generation:
    """One finished sample of a method under one budget.

    Attributes:
        prompt_ids: the prompt.
        completion_ids: thinking + forced text + solution.
        forced_mask: 1 where a token was inserted (``</think>``, a transition), not sampled.
        thinking_tokens: sampled thinking tokens (a natural ``</think>`` included).
        solution_tokens: sampled tokens after the thinking.
        thinking_truncated: the thinking was cut and forced closed.
        think_finish_reason: ``"think_end"``, ``"budget"``, ``"eos"``, ``"length"`` or ``None``.
        finish_reason: ``"eos"``, ``"budget"`` or ``"length"``.
        generated_tokens: tokens the engine sampled for this record (its share of the
            cost; in a nested sweep the shared thinking is charged to the largest budget).
    """

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    forced_mask: tuple[int, ...]
    thinking_tokens: int
    solution_tokens: int
    thinking_truncated: bool
    think_finish_reason: str | None
    finish_reason: str
    generated_tokens: int


@dataclass
class NestedStats:
    """Counters of one nested call: engine calls and samples generated independently."""

    engine_calls: int = 0
    fallbacks: int = 0


def from_completion(c: BudgetedCompletion, generated_tokens: int | None = None) -> Generation:
    """A :class:`Generation` from a backend's :class:`BudgetedCompletion`."""
    sampled = c.thinking_tokens + c.solution_tokens
    return Generation(
        tuple(c.prompt_ids), tuple(c.completion_ids), tuple(c.forced_mask), c.thinking_tokens, c.solution_tokens,
        c.thinking_truncated, c.think_finish_reason, c.finish_reason,
        sampled if generated_tokens is None else generated_tokens,
    )


def thinking_stream(c: BudgetedCompletion, eos_id: int) -> list[int]:
    """The tokens the policy sampled while thinking in ``c`` (a dropped EOS put back)."""
    ids = list(c.completion_ids[: c.thinking_tokens])
    if c.think_finish_reason == "eos" and (not ids or ids[-1] != eos_id):
        ids.append(eos_id)
    return ids


def _replay(stream: Sequence[int], budget: Budget, backend: Any, prompt: Sequence[int]) -> BudgetTracker | None:
    """A tracker for ``budget`` fed with ``stream``; ``None`` if the stream cannot decide the thinking."""
    tracker = BudgetTracker(budget, backend.special, prompt, backend.context_length)
    tracker.feed(stream)
    return None if tracker.phase is Phase.THINKING else tracker


def reseeded(sampling: Any, salt: int) -> Any:
    """``sampling`` with a seed derived from ``salt`` (unchanged when unseeded).

    A seeded engine call replays the same random stream; a solution call that reused
    the thinking call's seed would draw its tokens from the very numbers that drew
    the thinking, so the solution would not be a fresh draw given the thinking.
    Every extra call of a sweep therefore gets its own seed.
    """
    if sampling is None or getattr(sampling, "seed", None) is None:
        return sampling
    return replace(sampling, seed=(sampling.seed + 7_919 * (salt + 1)) % 2**31)


def _solve(backend: Any, prefixes: list[list[int]], caps: list[int | None], sampling: Any,
           stats: NestedStats) -> list[BudgetedCompletion]:
    """One unconstrained pass per prefix (grouped by cap): the solution phase only, freshly seeded."""
    out: list[BudgetedCompletion | None] = [None] * len(prefixes)
    groups: dict[int | None, list[int]] = {}
    for i, cap in enumerate(caps):
        groups.setdefault(cap, []).append(i)
    for cap, idx in groups.items():
        res = backend.generate([prefixes[i] for i in idx], Budget.unconstrained(max_tokens=cap),
                               reseeded(sampling, stats.engine_calls))
        stats.engine_calls += 1
        for i, r in zip(idx, res, strict=True):
            out[i] = r
    return out  # type: ignore[return-value]


def nested_phased(
    backend: Any, prompts: Sequence[Sequence[int]], budgets: Sequence[Budget], sampling: Any,
    transition_ids: Sequence[int] | None = None, stats: NestedStats | None = None,
) -> list[list[Generation]]:
    """Run the two-phase protocol for several budgets sharing each sample's thinking.

    Args:
        backend: an :class:`~er_env.backends.base.Backend`.
        prompts: token-id prompts.
        budgets: constrained budgets (any order; ``think`` set).
        sampling: a :class:`~er_env.backends.base.SamplingConfig`.
        transition_ids: forced ids that replace ``</think>`` when the thinking is cut
            (``None``: plain Elastic Reasoning, the tracker's own ``</think>``).
        stats: filled with engine calls and fallbacks when given.

    Returns:
        ``out[b][j]``: the generation of prompt ``j`` under ``budgets[b]``.

    Raises:
        ValueError: an unconstrained budget.
    """
    stats = stats if stats is not None else NestedStats()
    if not budgets:
        return []
    if any(not b.constrained for b in budgets):
        raise ValueError(f"nested_phased needs constrained budgets, got {list(budgets)}.")
    prompts = [list(p) for p in prompts]
    top = max(range(len(budgets)), key=lambda i: (budgets[i].think, budgets[i].solution or 0))
    t_max = budgets[top].think
    first_budget = budgets[top] if transition_ids is None else Budget(
        think=t_max, solution=1, eos_in_thinking=budgets[top].eos_in_thinking)
    first = backend.generate(prompts, first_budget, sampling)
    stats.engine_calls += 1
    eos_id = min(backend.special.eos)
    streams = [thinking_stream(c, eos_id) for c in first]
    out: list[list[Generation | None]] = [[None] * len(prompts) for _ in budgets]
    if transition_ids is None:
        out[top] = [from_completion(c) for c in first]
    charge = [c.thinking_tokens + c.solution_tokens for c in first]  # the first call's cost, charged to `top`
    work: list[tuple[int, int, BudgetTracker, list[int], int | None]] = []  # (b, j, tracker, prefix, cap)
    fallback: dict[int, list[int]] = {}
    for b, budget in enumerate(budgets):
        if out[b][0] is not None:
            continue
        for j, prompt in enumerate(prompts):
            tracker = _replay(streams[j], budget, backend, prompt)
            if tracker is None:
                fallback.setdefault(b, []).append(j)
                continue
            if tracker.done:
                out[b][j] = _finish(tracker, None, None, 0)
                continue
            prefix = tracker.solution_prefix()
            if transition_ids is not None and tracker.thinking_truncated:
                prefix = list(prompt) + tracker.completion_ids[: tracker.thinking_tokens] + list(transition_ids)
            work.append((b, j, tracker, prefix, _room(budget.solution, backend, prefix)))
    live = [w for w in work if w[4] is None or w[4] > 0]  # no room left in the context: nothing to generate
    solved = iter(_solve(backend, [w[3] for w in live], [w[4] for w in live], sampling, stats) if live else [])
    for b, j, tracker, prefix, cap in work:
        sol = next(solved) if cap is None or cap > 0 else None
        cost = 0 if sol is None else sol.thinking_tokens + sol.solution_tokens
        out[b][j] = _finish(tracker, sol, transition_ids, cost, prefix)
    for b, idx in fallback.items():
        stats.fallbacks += len(idx)
        again = nested_phased(backend, [prompts[j] for j in idx], [budgets[b]],
                              reseeded(sampling, 1_000 + stats.engine_calls), transition_ids, stats)[0]
        for j, g in zip(idx, again, strict=True):
            out[b][j] = g
    for j in range(len(prompts)):
        g = out[top][j]
        out[top][j] = _charge(g, g.generated_tokens + (0 if transition_ids is None else charge[j]))  # type: ignore
    return out  # type: ignore[return-value]


def _room(cap: int | None, backend: Any, prefix: Sequence[int]) -> int | None:
    ctx = backend.context_length
    if ctx is None:
        return cap
    left = ctx - len(prefix)
    return left if cap is None else min(cap, left)


def _charge(g: Generation, tokens: int) -> Generation:
    return Generation(g.prompt_ids, g.completion_ids, g.forced_mask, g.thinking_tokens, g.solution_tokens,
                      g.thinking_truncated, g.think_finish_reason, g.finish_reason, tokens)


def _finish(tracker: BudgetTracker, sol: BudgetedCompletion | None, transition_ids: Sequence[int] | None,
            cost: int, prefix: Sequence[int] | None = None) -> Generation:
    """Combine a replayed thinking tracker with its solution pass."""
    if sol is not None and (transition_ids is None or not tracker.thinking_truncated):
        ids = list(sol.completion_ids[: sol.thinking_tokens + sol.solution_tokens])
        tracker.feed(ids)
        if not tracker.done:
            tracker.finish(sol.finish_reason)
    if transition_ids is None or not tracker.thinking_truncated:
        if not tracker.done:  # no room left for a solution
            tracker.finish("length")
        return from_completion(tracker.result(), cost)
    thinking = tracker.completion_ids[: tracker.thinking_tokens]
    solution = [] if sol is None else list(sol.completion_ids)
    n_sol = len(solution)
    finish = "length" if sol is None else sol.finish_reason
    if finish == "length" and tracker.budget.solution is not None and n_sol >= tracker.budget.solution:
        finish = "budget"
    return Generation(
        tuple(tracker.prompt_ids), tuple(thinking + list(transition_ids) + solution),
        tuple([0] * len(thinking) + [1] * len(transition_ids) + [0] * n_sol), tracker.thinking_tokens, n_sol,
        True, tracker.think_finish_reason, finish, cost,
    )


def nested_truncation(backend: Any, prompts: Sequence[Sequence[int]], caps: Sequence[int], sampling: Any,
                      stats: NestedStats | None = None) -> list[list[Generation]]:
    """Plain truncation (one pass capped at each of ``caps`` tokens) from a single pass.

    Args:
        backend: a backend.
        prompts: token-id prompts.
        caps: total-token caps, one per budget.
        sampling: sampling settings.
        stats: filled with engine calls when given.

    Returns:
        ``out[b][j]`` for ``caps[b]`` and prompt ``j``; the engine cost is charged
        to the largest cap.
    """
    stats = stats if stats is not None else NestedStats()
    if not caps:
        return []
    top = max(range(len(caps)), key=lambda i: caps[i])
    first = backend.generate([list(p) for p in prompts], Budget.unconstrained(max_tokens=caps[top]), sampling)
    stats.engine_calls += 1
    out = []
    for b, cap in enumerate(caps):
        row = []
        for c in first:
            if b == top:
                row.append(from_completion(c))
                continue
            tracker = BudgetTracker(Budget.unconstrained(max_tokens=cap), backend.special, c.prompt_ids,
                                    backend.context_length)
            tracker.feed(list(c.completion_ids))
            if not tracker.done:
                tracker.finish(c.finish_reason)
            row.append(from_completion(tracker.result(), 0))
        out.append(row)
    return out
