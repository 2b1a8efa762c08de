"""The one token-by-token decode loop over a transformers causal LM, and its sampler.

Two callers drive it: :class:`~er_env.backends.hf.HFBackend` (rows are
:class:`~er_env.budget.BudgetTracker` s: the budget protocol decides what is kept and
when ``</think>`` is forced) and the ``er serve`` dev server
(:mod:`er_serving.server.generation`: a row follows vLLM's request semantics). What a
row does with a sampled token is the caller's; the loop owns batching, left padding,
positions, the KV cache and sampling:

- rows are prefilled together (left padded), then each step feeds one token per live
  row: either the token the row just accepted or the next of the ids it asked to feed
  (a sampled token followed by forced ``</think>`` ids goes through the model once,
  into the same cache);
- a row may ask for a *forced* next token instead of a sample (vLLM's native thinking
  budget); its reported logprob is the model's own for that token;
- finished rows leave the batch and the cache (``batch_select_indices``).

Logprobs are the chosen token's log-probability at the sampling temperature, before
top-k/top-p filtering; with greedy decoding, the plain model distribution.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, Sequence

import torch

from er_env.backends.base import SamplingConfig

__all__ = ["DecodeRow", "CachedDecoder", "sample", "filter_top_k_top_p"]


class DecodeRow(Protocol):
    """One sequence of a batch, as the decode loop sees it."""

    def forced_next(self) -> int | None:
        """A token id to take instead of sampling at this step, or ``None`` to sample."""
        ...

    def accept(self, token: int, logprob: float) -> list[int] | None:
        """Take the chosen token; return the ids to feed the model next, or ``None`` when the row is done."""
        ...


def filter_top_k_top_p(scores: torch.Tensor, top_k: int | None, top_p: float) -> torch.Tensor:
    """Mask (to -inf) tokens outside the top-k and outside the top-p nucleus (rows are sequences)."""
    if top_k is not None and 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, sorted_idx = torch.sort(scores, descending=True, dim=-1)
        probs = torch.softmax(sorted_scores, dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # keep the token that crosses top_p
        scores = scores.masked_fill(torch.zeros_like(drop).scatter(-1, sorted_idx, drop), float("-inf"))
    return scores


def sample(logits: torch.Tensor, sampling: SamplingConfig, generator: torch.Generator | None,
           forced: Sequence[int | None] | None = None) -> tuple[list[int], list[float]]:
    """Choose one token per row of ``logits`` (``[rows, vocab]``); return ids and their logprobs.

    Args:
        logits: next-token logits, one row per sequence.
        sampling: temperature (0: greedy), top-k, top-p.
        generator: the RNG for sampling (``None``: torch's global one).
        forced: per row, a token to take instead of choosing one (``None`` entries choose).

    Returns:
        ``(token_ids, logprobs)``, one of each per row.

    """
    if sampling.greedy:
        logp = torch.log_softmax(logits, dim=-1)
        toks = logits.argmax(dim=-1)
    else:
        scaled = logits / sampling.temperature
        logp = torch.log_softmax(scaled, dim=-1)
        probs = torch.softmax(filter_top_k_top_p(scaled, sampling.top_k, sampling.top_p), dim=-1)
        toks = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    if forced is not None and any(f is not None for f in forced):
        fixed = [int(f) if f is not None else int(t) for f, t in zip(forced, toks.tolist(), strict=True)]
        toks = torch.tensor(fixed, dtype=torch.long, device=logits.device)
    chosen = logp.gather(-1, toks[:, None]).squeeze(-1)
    return toks.tolist(), chosen.tolist()


class CachedDecoder:
    """Batched, KV-cached decoding of :class:`DecodeRow` s with one model.

    Args:
        model: a transformers causal LM (eval mode).
        pad_id: the id used for left padding (masked out).
    """

    def __init__(self, model: Any, pad_id: int) -> None:
        self.model = model
        self.pad_id = int(pad_id)
        self.device = next(model.parameters()).device
        params = inspect.signature(model.forward).parameters
        self._keep_arg = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in params), None)
        # transformers >= 5.25 names the KV cache ``cache`` (``past_key_values`` is deprecated there);
        # older releases (the vLLM venv's 5.19) only know ``past_key_values``
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def forward(self, ids: torch.Tensor, attn: torch.Tensor, pos: torch.Tensor, cache: Any = None
                ) -> tuple[torch.Tensor, Any]:
        """One model call; returns the last position's logits (float32) and the cache."""
        kwargs = {self._keep_arg: 1} if self._keep_arg else {}
        kwargs[self._cache_arg] = cache
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **kwargs)
        return out.logits[:, -1, :].float(), getattr(out, self._cache_arg)

    @torch.inference_mode()
    def run(self, rows: Sequence[DecodeRow], prefixes: Sequence[Sequence[int]], sampling: SamplingConfig,
            generator: torch.Generator | None) -> None:
        """Decode until every row is done; ``prefixes[i]`` is row ``i``'s context so far (prompt + kept tokens)."""
        rows = list(rows)
        if not rows:
            return
        width = max(len(p) for p in prefixes)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        for r, prefix in enumerate(prefixes):
            ids[r, width - len(prefix):] = torch.tensor(list(prefix), dtype=torch.long)
            attn[r, width - len(prefix):] = 1
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        attn, next_pos = attn.to(self.device), pos[:, -1].to(self.device) + 1
        logits, cache = self.forward(ids.to(self.device), attn, pos.to(self.device))
        pending: list[list[int]] = [[] for _ in rows]
        while True:
            forced = [row.forced_next() if not pending[r] else None for r, row in enumerate(rows)]
            toks, lps = sample(logits, sampling, generator, forced)
            keep: list[int] = []
            for r, row in enumerate(rows):
                if not pending[r]:
                    fed = row.accept(toks[r], lps[r])
                    if not fed:  # done (or nothing left to feed)
                        continue
                    pending[r] = list(fed)
                keep.append(r)
            if not keep:
                return
            if len(keep) < len(rows):  # drop finished rows from the batch and the cache
                index = torch.tensor(keep, dtype=torch.long, device=self.device)
                if hasattr(cache, "batch_select_indices"):
                    cache.batch_select_indices(index)
                else:  # a legacy tuple cache: select along the batch dimension
                    cache = tuple(tuple(t[index] for t in layer) for layer in cache)
                attn, next_pos = attn[index], next_pos[index]
                rows, pending = [rows[r] for r in keep], [pending[r] for r in keep]
            step = torch.tensor([p.pop(0) for p in pending], dtype=torch.long, device=self.device)[:, None]
            attn = torch.cat([attn, torch.ones((len(rows), 1), dtype=attn.dtype, device=self.device)], dim=1)
            logits, cache = self.forward(step, attn, next_pos[:, None], cache)
            next_pos = next_pos + 1
