"""Hugging Face transformers backend: batched, KV cache carried across phases.

:class:`HFBackend` runs the Elastic Reasoning protocol (``er_env.budget``) with a
plain ``transformers`` causal LM. Prompts are batched with left padding and decoded
step by step; each sample owns a :class:`~er_env.budget.BudgetTracker`, which decides
what is kept, when ``</think>`` is forced and when the sample is done. The budget
rules live in the tracker alone.

KV cache: a sample's forced ``</think>`` id(s) are fed through the model once, as
the sample's next input(s), into the same ``past_key_values`` that holds the prompt
and the thinking tokens; the solution phase then continues from that cache. The
prefix is never re-encoded (``reuse_kv_cache=False`` does re-encode, as a
two-call reference path, like a server backend would).

Samples move through the phases independently inside one batch: a sample whose
thinking ended early starts its solution while others still think, so the batch
costs one forward pass per step, not one pass per phase boundary. Finished samples
are dropped from the batch (and from the cache) as they end.

Logprobs: the log-probability of each sampled token under the model's distribution
at the sampling temperature (before top-k/top-p filtering); with greedy decoding,
the plain model distribution. Forced tokens carry
:data:`~er_env.budget.FORCED_LOGPROB`.

Example:
    >>> from er_env.backends.hf import HFBackend  # doctest: +SKIP
    >>> from er_env.budget import Budget
    >>> backend = HFBackend("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", device="cuda")  # doctest: +SKIP
    >>> ids = backend.chat_prompt("What is 2 + 3?")  # doctest: +SKIP
    >>> out = backend.generate([ids], Budget(think=512, solution=256))  # doctest: +SKIP

"""

from __future__ import annotations

from typing import Any, Sequence

from er_env.backends.base import Backend, BackendError, DependencyNotInstalled, SamplingConfig
from er_env.budget import Budget, BudgetedCompletion, BudgetError, BudgetTracker, Phase
from er_env.quiet import quiet_model_loading
from er_env.tokens import special_tokens

try:  # lazy-import hint: this module is only imported when the backend is used
    import torch
    import transformers
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise DependencyNotInstalled(
        f"The 'hf' backend needs torch and transformers ({exc}). Install them: pip install torch transformers"
    ) from exc

from er_env.backends.decoding import CachedDecoder  # noqa: E402 - needs torch, checked above

__all__ = ["HFBackend"]


def _resolve_dtype(dtype: Any, device: str) -> Any:
    if dtype is None:
        return torch.float32 if device == "cpu" else "auto"
    if isinstance(dtype, str) and dtype != "auto":
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"Unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16' or 'auto'.")
        return resolved
    return dtype


def _dtype_kwarg(dtype: Any, device: str) -> dict[str, Any]:
    """``from_pretrained``'s dtype keyword: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    name = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    return {name: _resolve_dtype(dtype, device)}


class HFBackend(Backend):
    """Budgeted generation with a Hugging Face causal LM.

    Args:
        model: a hub name or local path, or a loaded ``PreTrainedModel``.
        tokenizer: the tokenizer (loaded from ``model`` when ``None``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when
            available (for a path) or the model's own device (for a model object).
        dtype: weight dtype when loading from a path (``None``: float32 on CPU,
            the checkpoint's dtype otherwise).
        batch_size: prompts decoded together; longer lists are split.
        think_end: the thinking delimiter text.
        context_length: the model context in tokens (default:
            ``config.max_position_embeddings``).
        eos_ids: ids that end a completion (default: the tokenizer's EOS plus the
            model's ``generation_config.eos_token_id``).
        reuse_kv_cache: carry the cache into the solution phase (default). False
            re-encodes ``prompt + thinking + </think>`` for the solution phase (a
            slower reference path, token-identical up to floating-point noise).

    Raises:
        TokenizerError: the tokenizer cannot represent ``think_end``.
        ValueError: bad arguments (no tokenizer for a model object, unknown dtype).

    """

    def __init__(
        self,
        model: str | Any,
        tokenizer: Any = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 16,
        think_end: str = "</think>",
        context_length: int | None = None,
        eos_ids: Sequence[int] | None = None,
        reuse_kv_cache: bool = True,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        if isinstance(model, str):
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            tokenizer = tokenizer or transformers.AutoTokenizer.from_pretrained(model)
            with quiet_model_loading():
                model = transformers.AutoModelForCausalLM.from_pretrained(model, **_dtype_kwarg(dtype, device))
        elif tokenizer is None:
            name = getattr(model, "name_or_path", "") or ""
            if not name:
                raise ValueError("HFBackend got a model object without a tokenizer; pass tokenizer=...")
            tokenizer = transformers.AutoTokenizer.from_pretrained(name)
        if device is not None:
            model.to(device)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.batch_size = batch_size
        self.reuse_kv_cache = bool(reuse_kv_cache)
        self.special = special_tokens(tokenizer, think_end=think_end, eos_ids=eos_ids,
                                      generation_config=model.generation_config)
        self.context_length = context_length or getattr(model.config, "max_position_embeddings", None)
        self.vocab_size = int(model.get_input_embeddings().weight.shape[0])
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else min(self.special.eos))
        self._decoder = CachedDecoder(self.model, self.pad_id)

    # ------------------------------------------------------------- generation
    def generate(
        self, prompts: Sequence[Sequence[int]], budget: Budget, sampling: SamplingConfig | None = None
    ) -> list[BudgetedCompletion]:
        """Run the budget protocol for each prompt; see :meth:`Backend.generate`.

        Args:
            prompts: token ids per sample, templates already applied. An empty list
                returns an empty list.
            budget: thinking/solution budgets (``Budget.unconstrained()``: one pass).
            sampling: sampling settings (default ``SamplingConfig()``); with a seed,
                the same call on the same device returns the same tokens.

        Returns:
            One :class:`BudgetedCompletion` per prompt, in order, with ``text`` set.

        Raises:
            BudgetError: a prompt leaves no room in the model context, or the
                budget is unbounded while the context length is unknown.
            TypeError: ``budget``/``sampling`` have the wrong type, or a prompt is text.
            ValueError: a prompt is empty or holds ids outside the vocabulary.
            BackendError: the model failed while generating.

        """
        sampling = sampling or SamplingConfig()
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be an er_env.budget.Budget, got {type(budget).__name__}.")
        if not isinstance(sampling, SamplingConfig):
            raise TypeError(f"sampling must be a SamplingConfig, got {type(sampling).__name__}.")
        if self.context_length is None and budget.cap() is None:
            raise BudgetError(
                f"{budget} leaves generation unbounded and the model context length is unknown; set "
                "Budget(max_tokens=N) or pass HFBackend(context_length=N)."
            )
        checked = [self._check_prompt(i, p) for i, p in enumerate(prompts)]
        trackers = [BudgetTracker(budget, self.special, p, self.context_length) for p in checked]
        generator = None
        if sampling.seed is not None and not sampling.greedy:
            generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        order = sorted(range(len(trackers)), key=lambda i: len(checked[i]))  # similar lengths share a batch
        try:
            for start in range(0, len(order), self.batch_size):
                chunk = [trackers[i] for i in order[start : start + self.batch_size]]
                if self.reuse_kv_cache:
                    self._decode(chunk, sampling, generator, stop_at_solution=False)
                else:
                    self._decode(chunk, sampling, generator, stop_at_solution=True)
                    self._decode(chunk, sampling, generator, stop_at_solution=False)
        except (RuntimeError, IndexError) as exc:
            raise BackendError(f"HF generation failed on {self.device}: {type(exc).__name__}: {exc}") from exc
        return [tr.result(text=self.decode(tr.completion_ids)) for tr in trackers]

    def _check_prompt(self, index: int, prompt: Any) -> list[int]:
        if isinstance(prompt, (str, bytes)):
            raise TypeError(
                f"prompts[{index}] is text ({prompt[:40]!r}...); pass token ids, e.g. backend.encode(text) "
                "or backend.chat_prompt(question)."
            )
        ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError(f"prompts[{index}] is empty; a prompt needs at least one token (e.g. the BOS id).")
        bad = [t for t in ids if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"prompts[{index}] holds ids {bad[:5]} outside the vocabulary [0, {self.vocab_size}).")
        return ids

    def _decode(
        self, trackers: list[BudgetTracker], sampling: SamplingConfig, generator: Any, stop_at_solution: bool
    ) -> None:
        """Decode until every tracker is done (or has reached its solution phase), in one batch."""
        rows = [_TrackerRow(tr, stop_at_solution, sampling.logprobs) for tr in trackers
                if _wants_tokens(tr, stop_at_solution)]
        self._decoder.run(rows, [row.tracker.solution_prefix() for row in rows], sampling, generator)


def _wants_tokens(tracker: BudgetTracker, stop_at_solution: bool) -> bool:
    return not tracker.done and not (stop_at_solution and tracker.phase is Phase.SOLUTION)


class _TrackerRow:
    """A :class:`~er_env.backends.decoding.DecodeRow` whose rules are the budget tracker's."""

    def __init__(self, tracker: BudgetTracker, stop_at_solution: bool, logprobs: bool) -> None:
        self.tracker, self.stop_at_solution, self.logprobs = tracker, stop_at_solution, logprobs

    def forced_next(self) -> int | None:
        return None  # the tracker forces </think> itself, after the sampled token

    def accept(self, token: int, logprob: float) -> list[int] | None:
        tracker = self.tracker
        before = len(tracker.completion_ids)
        tracker.feed([token], [logprob] if self.logprobs else None)
        fed = list(tracker.completion_ids[before:])  # the token, then any forced </think> ids
        if not _wants_tokens(tracker, self.stop_at_solution) or not fed:
            if not tracker.done and not self.stop_at_solution:  # defensive: a tracker that kept nothing
                tracker.finish("length")
            return None
        return fed
