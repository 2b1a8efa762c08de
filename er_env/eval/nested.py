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

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

from er_env.budget import FORCED_LOGPROB, Budget, BudgetedCompletion, BudgetTracker, Phase

__all__ = ["Cut", "Generation", "NestedStats", "cut_and_continue", "from_completion", "nested_phased",
           "nested_truncation", "reseeded", "thinking_stream"]


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


def _replay(stream: Sequence[int], logprobs: Sequence[float] | None, budget: Budget, backend: Any,
            prompt: Sequence[int]) -> BudgetTracker | None:
    """A tracker for ``budget`` fed with ``stream``; ``None`` if the stream cannot decide the thinking."""
    tracker = BudgetTracker(budget, backend.special, prompt, backend.context_length)
    tracker.feed(stream, logprobs)
    return None if tracker.phase is Phase.THINKING else tracker


def _stream_logprobs(c: BudgetedCompletion, stream: Sequence[int]) -> list[float] | None:
    """The sampling logprobs of :func:`thinking_stream` (``nan`` for a put-back EOS), or ``None``."""
    if len(c.logprobs) != len(c.completion_ids):
        return None
    lps = [float(x) for x in c.logprobs[: c.thinking_tokens]]
    return lps + [math.nan] * (len(stream) - len(lps))


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


@dataclass(frozen=True)
class Cut:
    """One completion answered from a cut of a shared thinking pass.

    Attributes:
        completion: the finished record (logprobs and ``env_mask`` as a live run gives them).
        generated_tokens: tokens the engine sampled for it; the shared thinking pass is
            charged to the first solution of the sample's largest budget.
    """

    completion: BudgetedCompletion
    generated_tokens: int


def _top(budgets: Sequence[Budget]) -> int:
    return max(range(len(budgets)), key=lambda i: (budgets[i].think, budgets[i].solution or 0))


def cut_and_continue(
    backend: Any, prompts: Sequence[Sequence[int]], cuts: Sequence[Sequence[Budget]], sampling: Any,
    solutions_per_cut: int = 1, transition_ids: Sequence[int] | None = None, stats: NestedStats | None = None,
) -> list[list[list[Cut]]]:
    """Think once per prompt up to its largest budget; answer ``solutions_per_cut`` times from every cut.

    The mechanics shared by ``er eval``'s nested sweeps (:func:`nested_phased`) and
    ``er train``'s anytime rollouts (:mod:`trainers.budgets`). Each prompt may have
    its own cut budgets. Prompts are grouped by their largest budget: one thinking
    call per distinct largest budget (its first solution comes with it when
    ``transition_ids`` is ``None``); every other (cut, solution) is a replay of the
    thinking through a fresh :class:`BudgetTracker` and one solution-only call per
    distinct solution cap, each freshly seeded. Each record has the law of an
    independent run under its budget (see the module docstring).

    Args:
        backend: an :class:`~er_env.backends.base.Backend`.
        prompts: token-id prompts.
        cuts: ``cuts[j]``: the constrained budgets of prompt ``j`` (any order, non-empty).
        sampling: a :class:`~er_env.backends.base.SamplingConfig`.
        solutions_per_cut: solutions sampled from each cut (>= 1).
        transition_ids: forced ids that replace ``</think>`` at a cut (``None``: the tracker's ``</think>``).
        stats: filled with engine calls and fallbacks when given.

    Returns:
        ``out[j][b][m]``: prompt ``j``, budget ``cuts[j][b]``, solution ``m``.

    Raises:
        ValueError: an unconstrained budget, an empty cut list, a length mismatch or
            ``solutions_per_cut`` < 1.
    """
    stats = stats if stats is not None else NestedStats()
    n = solutions_per_cut
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"solutions_per_cut must be an integer >= 1, got {n!r}.")
    if len(cuts) != len(prompts):
        raise ValueError(f"Got {len(prompts)} prompts but {len(cuts)} cut lists; give one list per prompt.")
    for j, cut in enumerate(cuts):
        if not cut or any(not b.constrained for b in cut):
            raise ValueError(f"cut_and_continue needs constrained budgets for every prompt; prompt {j} has "
                             f"{list(cut)}.")
    prompts = [list(p) for p in prompts]
    tops = [_top(c) for c in cuts]
    firsts: list[BudgetedCompletion | None] = [None] * len(prompts)
    by_top: dict[Budget, list[int]] = {}
    for j, c in enumerate(cuts):
        top = c[tops[j]]
        first_budget = top if transition_ids is None else Budget(
            think=top.think, solution=1, eos_in_thinking=top.eos_in_thinking, train_forced_token=top.train_forced_token)
        by_top.setdefault(first_budget, []).append(j)
    for first_budget, idx in by_top.items():
        res = backend.generate([prompts[j] for j in idx], first_budget, sampling)
        stats.engine_calls += 1
        for j, r in zip(idx, res, strict=True):
            firsts[j] = r
    eos_id = min(backend.special.eos)
    out: list[list[list[Cut | None]]] = [[[None] * n for _ in c] for c in cuts]
    work: list[tuple[int, int, int, BudgetTracker, list[int], int | None]] = []  # (j, b, m, tracker, prefix, cap)
    fallback: dict[int, list[tuple[int, int]]] = {}  # b -> (j, m) generated independently
    width = max(len(c) for c in cuts) if cuts else 0
    for b in range(width):
        for j, prompt in enumerate(prompts):
            if b >= len(cuts[j]):
                continue
            first = firsts[j]
            assert first is not None
            stream = thinking_stream(first, eos_id)
            lps = _stream_logprobs(first, stream)
            for m in range(n):
                if transition_ids is None and b == tops[j] and m == 0:
                    out[j][b][m] = Cut(first, first.thinking_tokens + first.solution_tokens)
                    continue
                tracker = _replay(stream, lps, cuts[j][b], backend, prompt)
                if tracker is None:
                    fallback.setdefault(b, []).append((j, m))
                    continue
                if tracker.done:
                    out[j][b][m] = Cut(_finish(tracker, None, None), 0)
                    continue
                prefix = tracker.solution_prefix()
                if transition_ids is not None and tracker.thinking_truncated:
                    prefix = list(prompt) + tracker.completion_ids[: tracker.thinking_tokens] + list(transition_ids)
                work.append((j, b, m, tracker, prefix, _room(cuts[j][b].solution, backend, prefix)))
    live = [w for w in work if w[5] is None or w[5] > 0]  # no room left in the context: nothing to generate
    solved = iter(_solve(backend, [w[4] for w in live], [w[5] for w in live], sampling, stats) if live else [])
    for j, b, m, tracker, _prefix, cap in work:
        sol = next(solved) if cap is None or cap > 0 else None
        cost = 0 if sol is None else sol.thinking_tokens + sol.solution_tokens
        out[j][b][m] = Cut(_finish(tracker, sol, transition_ids), cost)
    for b, slots in fallback.items():
        stats.fallbacks += len(slots)
        again = cut_and_continue(backend, [prompts[j] for j, _ in slots], [[cuts[j][b]] for j, _ in slots],
                                 reseeded(sampling, 1_000 + stats.engine_calls), 1, transition_ids, stats)
        for (j, m), g in zip(slots, again, strict=True):
            out[j][b][m] = g[0][0]
    if transition_ids is not None:  # the thinking call's cost, charged to the largest budget's first solution
        for j, first in enumerate(firsts):
            assert first is not None
            c = out[j][tops[j]][0]
            assert c is not None
            out[j][tops[j]][0] = Cut(c.completion, c.generated_tokens + first.thinking_tokens + first.solution_tokens)
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
    if not budgets:
        return []
    if any(not b.constrained for b in budgets):
        raise ValueError(f"nested_phased needs constrained budgets, got {list(budgets)}.")
    cuts = cut_and_continue(backend, prompts, [list(budgets)] * len(prompts), sampling, 1, transition_ids, stats)
    return [[from_completion(cuts[j][b][0].completion, cuts[j][b][0].generated_tokens) for j in range(len(prompts))]
            for b in range(len(budgets))]


def _room(cap: int | None, backend: Any, prefix: Sequence[int]) -> int | None:
    ctx = backend.context_length
    if ctx is None:
        return cap
    left = ctx - len(prefix)
    return left if cap is None else min(cap, left)


def _finish(tracker: BudgetTracker, sol: BudgetedCompletion | None,
            transition_ids: Sequence[int] | None) -> BudgetedCompletion:
    """Combine a replayed thinking tracker with its solution pass."""
    sol_lps = None if sol is None or len(sol.logprobs) != len(sol.completion_ids) else sol.logprobs
    if sol is not None and (transition_ids is None or not tracker.thinking_truncated):
        k = sol.thinking_tokens + sol.solution_tokens
        tracker.feed(list(sol.completion_ids[:k]), None if sol_lps is None else list(sol_lps[:k]))
        if not tracker.done:
            tracker.finish(sol.finish_reason)
    if transition_ids is None or not tracker.thinking_truncated:
        if not tracker.done:  # no room left for a solution
            tracker.finish("length")
        return tracker.result()
    thinking = tracker.completion_ids[: tracker.thinking_tokens]
    think_lps = list(tracker._logprobs[: tracker.thinking_tokens])
    solution = [] if sol is None else list(sol.completion_ids)
    n_sol = len(solution)
    finish = "length" if sol is None else sol.finish_reason
    if finish == "length" and tracker.budget.solution is not None and n_sol >= tracker.budget.solution:
        finish = "budget"
    have_lps = tracker._have_logprobs and (sol is None or sol_lps is not None)
    forced = [0] * len(thinking) + [1] * len(transition_ids) + [0] * n_sol
    train_forced = tracker.budget.train_forced_token
    return BudgetedCompletion(
        prompt_ids=tuple(tracker.prompt_ids), completion_ids=tuple(thinking + list(transition_ids) + solution),
        logprobs=tuple(think_lps + [FORCED_LOGPROB] * len(transition_ids) + list(sol_lps or [])) if have_lps else (),
        env_mask=tuple(1 if (not f or train_forced) else 0 for f in forced), forced_mask=tuple(forced),
        thinking_tokens=tracker.thinking_tokens, solution_tokens=n_sol, thinking_truncated=True,
        think_finish_reason=tracker.think_finish_reason, finish_reason=finish,
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
