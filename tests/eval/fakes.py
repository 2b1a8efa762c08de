"""A fixed-seed fake engine: the next token is a hash of (seed, whole prefix).

Because each token depends only on the seed and everything before it, the same
prefix gives the same continuation in any call, batch or order: a nested sweep and
independent runs must then produce *identical* samples, which makes the
distributional argument of ``er_env.eval.nested`` checkable token by token with a
non-greedy sampler (natural ``</think>``, EOS while thinking and budget cuts all occur).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from er_env.backends.base import Backend, SamplingConfig
from er_env.budget import Budget, BudgetedCompletion, BudgetTracker, SpecialTokens

EOS = 2


class HashSampler(Backend):
    """Budgeted generation from a hash-based sampler (see module docstring)."""

    def __init__(self, think_end: Sequence[int] = (9,), context_length: int | None = None,
                 p_eos: float = 0.03, p_end: float = 0.05, seed: int = 123) -> None:
        self.special = SpecialTokens(think_end=tuple(think_end), eos=frozenset({EOS}), think_start=(7,))
        self.context_length = context_length
        self.p_eos, self.p_end = p_eos, p_end
        self.seed = seed  # the sampler's own: a call's SamplingConfig.seed is recorded, not used
        self.calls = 0
        self.sampled = 0
        self.seeds: list[int | None] = []

    def _next(self, seed: int, prefix: Sequence[int]) -> int:
        digest = hashlib.sha256(f"{seed}|{','.join(map(str, prefix))}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        end = self.special.think_end
        if len(end) > 1 and prefix and prefix[-1] == end[0] and u < 0.5:
            return end[1]
        if u < self.p_eos:
            return EOS
        if u < self.p_eos + self.p_end:
            return end[0]
        return 3 + int(u * 1e6) % 4

    def generate(self, prompts, budget: Budget, sampling: SamplingConfig | None = None) -> list[BudgetedCompletion]:
        seed = self.seed
        self.seeds.append(None if sampling is None else sampling.seed)
        self.calls += 1
        out = []
        for prompt in prompts:
            tracker = BudgetTracker(budget, self.special, prompt, self.context_length)
            for _ in range(100_000):
                if tracker.done:
                    break
                if tracker.remaining() == 0:
                    tracker.feed([3])  # lets the tracker close the phase, as engines do
                    continue
                tok = self._next(seed, tracker.solution_prefix())
                self.sampled += 1
                tracker.feed([tok])
            out.append(tracker.result())
        return out

    def encode(self, text: str) -> list[int]:
        return [3 + ord(c) % 4 for c in text[:5]] + list(self.special.think_end)
