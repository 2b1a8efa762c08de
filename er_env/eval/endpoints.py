"""Several OpenAI-compatible servers as one backend (data-parallel vLLM / SGLang).

:class:`EndpointPool` shards each :meth:`generate` call round-robin over its
:class:`~er_env.backends.openai.OpenAIBackend` members and runs the shards at the
same time (one thread each; each member keeps at most ``max_concurrency``
requests in flight), so ``n`` servers hold at most ``n * max_concurrency``
requests. A failing server fails the call with a :class:`BackendError` that names
it; the evaluation runner has already saved every finished chunk.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Sequence

from er_env.backends.base import Backend, BackendError, SamplingConfig
from er_env.budget import Budget, BudgetedCompletion

__all__ = ["EndpointPool"]


class EndpointPool(Backend):
    """Round-robin sharding over several backends with the same model and tokenizer.

    Args:
        members: the backends (usually ``OpenAIBackend``, one per server).

    Raises:
        ValueError: no members, or members with different protocol token ids.
    """

    def __init__(self, members: Sequence[Backend]) -> None:
        if not members:
            raise ValueError("EndpointPool needs at least one backend (pass --endpoint URL, repeatable).")
        specials = {m.special for m in members}
        if len(specials) != 1:
            raise ValueError(f"The endpoints disagree on special token ids: {specials}; serve one model everywhere.")
        self.members = list(members)
        self.special = members[0].special
        self.tokenizer = getattr(members[0], "tokenizer", None)
        lengths = [m.context_length for m in members if m.context_length is not None]
        self.context_length = min(lengths) if lengths else None

    def generate(self, prompts: Sequence[Sequence[int]], budget: Budget,
                 sampling: SamplingConfig | None = None) -> list[BudgetedCompletion]:
        """Shard ``prompts`` over the members; see :meth:`Backend.generate`.

        Raises:
            BackendError: a member failed (the message names its URL).
        """
        n = len(self.members)
        shards = [list(range(i, len(prompts), n)) for i in range(n)]
        out: list[BudgetedCompletion | None] = [None] * len(prompts)

        def run(i: int) -> list[BudgetedCompletion]:
            member, idx = self.members[i], shards[i]
            if not idx:
                return []
            shard_sampling = sampling
            if sampling is not None and sampling.seed is not None:  # distinct streams per shard
                shard_sampling = replace(sampling, seed=sampling.seed + 1_000_003 * i)
            try:
                return member.generate([prompts[j] for j in idx], budget, shard_sampling)
            except BackendError as exc:
                raise BackendError(f"endpoint {getattr(member, 'base_url', i)!r} failed: {exc}") from exc

        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(run, range(n)))
        for idx, res in zip(shards, results, strict=True):
            if len(res) != len(idx):
                raise BackendError(f"An endpoint returned {len(res)} completions for {len(idx)} prompts.")
            for j, r in zip(idx, res, strict=True):
                out[j] = r
        return out  # type: ignore[return-value]

    def encode(self, text: str) -> list[int]:
        """Tokenize text without special tokens."""
        return self.members[0].encode(text)

    def close(self) -> None:
        """Close every backend of the pool."""
        for m in self.members:
            m.close()
