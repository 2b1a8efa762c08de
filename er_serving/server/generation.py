"""Single-sequence generation with transformers, with vLLM's stop semantics.

:class:`TransformersGenerator` decodes one prompt at a time with a KV cache and
follows vLLM's ``SamplingParams`` rules, so a client sees the same shapes from this
small server as from ``vllm serve``:

- generation stops at the first id in ``stop_token_ids`` or an EOS id (unless
  ``ignore_eos``); that id is *included* in the returned ``token_ids`` and
  ``stop_reason`` is the id for a ``stop_token_ids`` hit, ``None`` for EOS;
- a stop string ends generation after the token that completes it; the ids keep
  that token, the text is cut before the string unless
  ``include_stop_str_in_output``;
- ``finish_reason`` is ``"stop"`` or ``"length"`` (``max_tokens`` reached);
- ``thinking_token_budget`` (vLLM's native thinking cap, when the generator knows
  the ``<think>``/``</think>`` ids): once the tokens after the last ``<think>``
  (prompt included) reach the budget, the ``</think>`` ids are forced.

Decoding and sampling are :mod:`er_env.backends.decoding`'s (the same loop and sampler
as ``er_env.backends.hf``); this module only adds the request rules above, as a
:class:`~er_env.backends.decoding.DecodeRow`. Logprobs are therefore the ones the HF
backend reports: the chosen token's log-probability at the sampling temperature, before
top-k/top-p filtering (greedy: the plain model distribution).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

from er_env.backends.base import SamplingConfig
from er_env.tokens import merge_eos_ids

__all__ = ["GenerationParams", "GenerationResult", "TransformersGenerator"]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings of one request (vLLM ``SamplingParams`` names).

    Attributes:
        max_tokens: most new tokens (``None``: up to the context).
        temperature: 0 is greedy.
        top_p: nucleus mass in (0, 1].
        top_k: top-k cutoff (0 or -1: off).
        seed: RNG seed (``None``: unseeded).
        stop_token_ids: ids that end generation (kept in the output).
        stop: strings that end generation.
        include_stop_str_in_output: keep a matched stop string in the text.
        ignore_eos: do not stop at EOS.
        skip_special_tokens: drop special tokens from the text (ids are untouched).
        thinking_token_budget: force ``</think>`` after this many thinking tokens.

    """

    max_tokens: int | None = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    stop: tuple[str, ...] = ()
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    thinking_token_budget: int | None = None


@dataclass(frozen=True)
class GenerationResult:
    """One finished sequence: ids (stop token included), logprobs, text, reasons."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    text: str
    finish_reason: str
    stop_reason: int | str | None


class TransformersGenerator:
    """Greedy or seeded sampling with a Hugging Face causal LM, one sequence at a time.

    Args:
        model: a loaded ``PreTrainedModel`` (eval mode is set).
        tokenizer: its tokenizer.
        eos_ids: ids that end generation (default: tokenizer and generation-config EOS).
        think_start: text of the opening thinking delimiter (native budget).
        think_end: text of the closing thinking delimiter (native budget).

    Raises:
        ValueError: the model has no known context length.

    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        eos_ids: Sequence[int] | None = None,
        think_start: str = "<think>",
        think_end: str = "</think>",
    ) -> None:
        import torch

        from er_env.backends.decoding import CachedDecoder

        self._torch = torch
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.max_model_len = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        if self.max_model_len <= 0:
            raise ValueError("The model config has no max_position_embeddings; cannot bound generation.")
        self.eos_ids = frozenset(int(i) for i in (eos_ids if eos_ids is not None else merge_eos_ids(
            tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None))))
        self.think_start_ids = tuple(tokenizer.encode(think_start, add_special_tokens=False))
        self.think_end_ids = tuple(tokenizer.encode(think_end, add_special_tokens=False))
        self.vocab_size = int(model.get_input_embeddings().weight.shape[0])
        pad = tokenizer.pad_token_id
        self._decoder = CachedDecoder(self.model, pad if pad is not None else min(self.eos_ids))
        self._lock = threading.Lock()  # one forward pass at a time; requests queue here

    def generate(self, prompt_ids: Sequence[int], params: GenerationParams) -> GenerationResult:
        """Generate one completion for ``prompt_ids``.

        Raises:
            ValueError: the prompt is empty, holds out-of-vocabulary ids, or leaves
                no room for ``max_tokens`` in the context (the message quotes the numbers).

        """
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise ValueError("The prompt is empty; send at least one token.")
        bad = [t for t in prompt if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"Prompt token ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size}).")
        room = self.max_model_len - len(prompt)
        max_tokens = room if params.max_tokens is None else params.max_tokens
        if max_tokens < 1 or max_tokens > room:
            raise ValueError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{len(prompt) + max_tokens} tokens ({len(prompt)} in the prompt, {max_tokens} for the "
                "completion). Reduce the prompt or max_tokens."
            )
        with self._lock, self._torch.inference_mode():
            return self._decode(prompt, max_tokens, params)

    def _decode(self, prompt: list[int], max_tokens: int, params: GenerationParams) -> GenerationResult:
        gen = None
        if params.seed is not None and params.temperature > 0:
            gen = self._torch.Generator(device=self.device).manual_seed(int(params.seed))
        sampling = SamplingConfig(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
        row = _RequestRow(self, prompt, max_tokens, params)
        self._decoder.run([row], [prompt], sampling, gen)
        text = self._text(row.out, row.finish, row.stop_reason, params)
        return GenerationResult(tuple(row.out), tuple(row.logprobs), text, row.finish, row.stop_reason)

    def _forced_token(self, prompt: list[int], out: list[int], budget: int | None) -> int | None:
        """Return the ``</think>`` id to force next under vLLM's native thinking cap, or None."""
        start, end = self.think_start_ids, self.think_end_ids
        if budget is None or not start or not end:
            return None
        seq = prompt + out
        s = _last_index(seq, start)
        if s < 0 or _last_index(seq, end) > s:
            return None
        thinking = seq[s + len(start) :]
        for k in range(min(len(end) - 1, len(thinking)), 0, -1):  # mid-way through forcing the delimiter
            if tuple(thinking[-k:]) == end[:k] and len(thinking) - k >= budget:
                return end[k]
        return end[0] if len(thinking) >= budget else None

    def _stop_string(self, out: list[int], stops: Sequence[str]) -> str | None:
        if not stops:
            return None
        text = self.tokenizer.decode(out, skip_special_tokens=False)
        return next((s for s in stops if s in text), None)

    def _text(self, out: list[int], finish: str, stop_reason: int | str | None, params: GenerationParams) -> str:
        ids = out
        if finish == "stop" and not isinstance(stop_reason, str) and not params.include_stop_str_in_output:
            ids = out[:-1]  # vLLM leaves a stop token out of the text
        text = self.tokenizer.decode(ids, skip_special_tokens=params.skip_special_tokens)
        if isinstance(stop_reason, str) and not params.include_stop_str_in_output:
            text = text[: text.find(stop_reason)] if stop_reason in text else text
        return text


def _last_index(seq: Sequence[int], pattern: Sequence[int]) -> int:
    n = len(pattern)
    for i in range(len(seq) - n, -1, -1):
        if tuple(seq[i : i + n]) == tuple(pattern):
            return i
    return -1


class _RequestRow:
    """One request as a :class:`~er_env.backends.decoding.DecodeRow`, with vLLM's stop rules."""

    def __init__(self, gen: TransformersGenerator, prompt: list[int], max_tokens: int,
                 params: GenerationParams) -> None:
        self.gen, self.prompt, self.max_tokens, self.params = gen, prompt, max_tokens, params
        self.stops = set(params.stop_token_ids) | (set() if params.ignore_eos else set(gen.eos_ids))
        self.out: list[int] = []
        self.logprobs: list[float] = []
        self.finish: str = "length"
        self.stop_reason: int | str | None = None

    def forced_next(self) -> int | None:
        return self.gen._forced_token(self.prompt, self.out, self.params.thinking_token_budget)

    def accept(self, token: int, logprob: float) -> list[int] | None:
        self.out.append(token)
        self.logprobs.append(logprob)
        if token in self.stops:
            self.finish, self.stop_reason = "stop", (token if token in self.params.stop_token_ids else None)
            return None
        hit = self.gen._stop_string(self.out, self.params.stop)
        if hit is not None:
            self.finish, self.stop_reason = "stop", hit
            return None
        return None if len(self.out) >= self.max_tokens else [token]
