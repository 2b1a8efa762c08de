"""HFBackend on the tiny model: token-exact budget semantics, batching, KV cache, errors."""

from __future__ import annotations

import pytest
import torch

from er_env.backends.base import BackendError, SamplingConfig
from er_env.budget import FORCED_LOGPROB, Budget, BudgetError, TokenizerError

GREEDY = SamplingConfig(temperature=0)


@pytest.fixture(scope="module")
def free_run(backend, prompts):
    """Unconstrained greedy completions: the reference for budgeted runs."""
    return backend.generate(prompts, Budget.unconstrained(), GREEDY)


def _naive_greedy(model, prefix: list[int], n: int, stop: set[int]) -> list[int]:
    """Greedy decoding that re-encodes the whole sequence every step (no cache)."""
    ids, out = list(prefix), []
    with torch.no_grad():
        for _ in range(n):
            tok = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            out.append(tok)
            ids.append(tok)
            if tok in stop:
                break
    return out


def _teacher_forced_logprobs(model, prompt: list[int], completion: list[int]) -> list[float]:
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [float(logp[len(prompt) - 1 + i, tok]) for i, tok in enumerate(completion)]


def test_tiny_model_closes_thinking_and_stops(free_run, backend):
    for res in free_run:
        assert res.think_finish_reason == "think_end" and res.finish_reason == "eos"
        assert not res.thinking_truncated and sum(res.forced_mask) == 0
        assert res.text == backend.decode(res.completion_ids)
    assert len({r.thinking_tokens for r in free_run}) > 1  # lengths vary with the prompt


def test_non_binding_budget_equals_unconstrained(backend, prompts, free_run):
    think = max(r.thinking_tokens for r in free_run) + 3
    solution = max(r.solution_tokens for r in free_run) + 3
    out = backend.generate(prompts, Budget(think=think, solution=solution), GREEDY)
    for res, ref in zip(out, free_run, strict=True):
        assert res.completion_ids == ref.completion_ids
        assert res.forced_mask == ref.forced_mask and res.env_mask == (1,) * len(ref.completion_ids)
        assert res.logprobs == pytest.approx(ref.logprobs, abs=1e-4)


@pytest.mark.parametrize("think,solution", [(6, 4), (11, 30)])
def test_binding_budget_cuts_thinking_then_forces_think_end(backend, prompts, free_run, think, solution):
    end = backend.special.think_end
    out = backend.generate(prompts, Budget(think=think, solution=solution), GREEDY)
    for res, ref in zip(out, free_run, strict=True):
        assert ref.thinking_tokens > think  # the budget binds for these prompts
        ids = list(res.completion_ids)
        assert ids[:think] == list(ref.completion_ids[:think])
        assert tuple(ids[think : think + len(end)]) == end
        assert res.forced_mask[think : think + len(end)] == (1,) * len(end)
        assert res.env_mask[think : think + len(end)] == (0,) * len(end)
        assert res.logprobs[think : think + len(end)] == (FORCED_LOGPROB,) * len(end)
        assert res.logprobs[:think] == pytest.approx(ref.logprobs[:think], abs=1e-4)
        assert res.solution_tokens == len(ids) - think - len(end) <= solution
        assert res.thinking_truncated and res.think_finish_reason == "budget"
        assert res.finish_reason in ("eos", "budget")
        assert res.finish_reason == "eos" or res.solution_tokens == solution


@pytest.mark.parametrize("budget", [Budget(think=9, solution=12), Budget.unconstrained()], ids=["t9s12", "free"])
def test_batched_equals_one_by_one(backend, prompts, budget):
    """Left padding, and (free run) samples that finish at different steps and leave the batch."""
    assert len({len(p) for p in prompts}) > 1  # left padding is exercised
    batched = backend.generate(prompts, budget, GREEDY)
    for prompt, res in zip(prompts, batched, strict=True):
        alone = backend.generate([prompt], budget, GREEDY)[0]
        assert alone.completion_ids == res.completion_ids
        assert alone.logprobs == pytest.approx(res.logprobs, abs=1e-4)


def test_kv_cache_solution_equals_naive_reencode(backend, prompts):
    from er_env.backends.hf import HFBackend

    budget = Budget(think=7, solution=15)
    cached = backend.generate(prompts, budget, GREEDY)
    reencoded = HFBackend(backend.model, backend.tokenizer, reuse_kv_cache=False).generate(prompts, budget, GREEDY)
    stop = set(backend.special.eos)
    for prompt, res, ref in zip(prompts, cached, reencoded, strict=True):
        assert res.completion_ids == ref.completion_ids
        prefix_len = res.thinking_tokens + sum(res.forced_mask)
        naive = _naive_greedy(backend.model, prompt + list(res.completion_ids[:prefix_len]), 15, stop)
        assert list(res.completion_ids[prefix_len:]) == naive


def test_logprobs_aligned_with_teacher_forcing(backend, prompts):
    out = backend.generate(prompts[:2], Budget(think=8, solution=10), GREEDY)
    for prompt, res in zip(prompts[:2], out, strict=True):
        assert len(res.logprobs) == len(res.completion_ids) == len(res.env_mask) == len(res.forced_mask)
        recomputed = _teacher_forced_logprobs(backend.model, prompt, list(res.completion_ids))
        for lp, ref, forced in zip(res.logprobs, recomputed, res.forced_mask, strict=True):
            assert lp == (FORCED_LOGPROB if forced else pytest.approx(ref, abs=1e-4))


def test_r1_template_prompt_ends_with_think(backend):
    ids = backend.chat_prompt("What is 1 + 2?")
    assert backend.decode(ids).endswith("<｜Assistant｜><think>\n")
    assert list(backend.special.think_start) == backend.encode("<think>")
    bare = ids[:-1] if backend.decode(ids[-1:]) == "\n" else ids  # ends exactly with <think>
    res = backend.generate([bare], Budget(think=5, solution=3), GREEDY)[0]
    assert res.thinking_tokens == 5 and res.completion_ids[5] == backend.special.think_end[0]


def test_unconstrained_max_tokens_and_no_logprobs(backend, prompts):
    no_lp = SamplingConfig(temperature=0, logprobs=False)
    res = backend.generate(prompts[:1], Budget.unconstrained(max_tokens=5), no_lp)
    assert len(res[0].completion_ids) == 5 and res[0].finish_reason == "length"
    assert res[0].logprobs == () and sum(res[0].forced_mask) == 0


def test_seeded_sampling_is_reproducible(backend, prompts):
    budget = Budget(think=12, solution=8)
    hot = SamplingConfig(temperature=1.5, seed=7)
    first = backend.generate(prompts, budget, hot)
    again = backend.generate(prompts, budget, hot)
    other = backend.generate(prompts, budget, SamplingConfig(temperature=1.5, seed=8))
    assert [r.completion_ids for r in first] == [r.completion_ids for r in again]
    assert [r.completion_ids for r in first] != [r.completion_ids for r in other]


def test_top_k_one_and_tiny_top_p_equal_greedy(backend, prompts):
    budget = Budget(think=6, solution=6)
    greedy = backend.generate(prompts[:2], budget, GREEDY)
    samplings = (SamplingConfig(temperature=0.8, top_k=1, seed=0), SamplingConfig(temperature=0.8, top_p=1e-6, seed=0))
    for sampling in samplings:
        out = backend.generate(prompts[:2], budget, sampling)
        assert [r.completion_ids for r in out] == [r.completion_ids for r in greedy]


def test_multi_token_think_end(tiny_multi_dir):
    from er_env.backends.hf import HFBackend

    multi = HFBackend(str(tiny_multi_dir), device="cpu")
    end = multi.special.think_end
    assert len(end) > 1
    questions = ["What is 3 + 4 + 5?", "Write a function f that reverses a string s."]
    prompts = [multi.chat_prompt(q) for q in questions]
    budget = Budget(think=6, solution=5)
    out = multi.generate(prompts, budget, GREEDY)
    ref = HFBackend(multi.model, multi.tokenizer, reuse_kv_cache=False).generate(prompts, budget, GREEDY)
    for res, naive in zip(out, ref, strict=True):
        assert res.completion_ids == naive.completion_ids
        assert 1 <= sum(res.forced_mask) <= len(end)
        cut = res.thinking_tokens + sum(res.forced_mask)
        assert tuple(res.completion_ids[cut - len(end) : cut]) == end
        assert all(m == 0 for m, f in zip(res.env_mask, res.forced_mask, strict=True) if f)


# ---------------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors(backend, prompts):
    with pytest.raises(TypeError, match="token ids"):
        backend.generate(["What is 1 + 1?"], Budget(think=4, solution=4))
    with pytest.raises(ValueError, match=r"prompts\[1\] is empty"):
        backend.generate([prompts[0], []], Budget(think=4, solution=4))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        backend.generate([[10**6]], Budget(think=4, solution=4))
    with pytest.raises(TypeError, match="Budget"):
        backend.generate(prompts, {"think": 4})  # type: ignore[arg-type]
    too_long = [prompts[0][0]] * backend.context_length
    with pytest.raises(BudgetError, match=rf"{backend.context_length} tokens but the model context is"):
        backend.generate([too_long], Budget(think=4, solution=4))
    assert backend.generate([], Budget(think=4, solution=4)) == []
    from er_env.backends.hf import HFBackend

    no_context = HFBackend(backend.model, backend.tokenizer, context_length=None)
    no_context.context_length = None  # e.g. a model config without max_position_embeddings
    with pytest.raises(BudgetError, match="max_tokens"):
        no_context.generate(prompts[:1], Budget.unconstrained())


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_budget_values(bad):
    with pytest.raises(BudgetError):
        Budget(think=bad, solution=4)


def test_tokenizer_without_think_end_rejected(backend):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from er_env.backends.hf import HFBackend

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1, "[EOS]": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", eos_token="[EOS]")
    with pytest.raises(TokenizerError, match="</think>"):
        HFBackend(backend.model, tok)


def test_model_failure_is_backend_error(backend, prompts, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated device failure")

    monkeypatch.setattr(backend._decoder, "forward", broken)
    with pytest.raises(BackendError, match="simulated device failure"):
        backend.generate(prompts[:1], Budget(think=4, solution=4), GREEDY)


def test_generate_cli_prints_budgeted_json(tiny_model_dir, backend, capsys):
    import json

    from er_cli import main

    args = ["generate", "--model", str(tiny_model_dir), "--prompt", "What is 3 + 4?", "--think", "6", "--solution", "5",
            "--device", "cpu"]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    expected = backend.generate([backend.chat_prompt("What is 3 + 4?")], Budget(think=6, solution=5), GREEDY)[0]
    assert record["completion_ids"] == list(expected.completion_ids)
    assert record["text"] == expected.text and record["prompt_text"].endswith("<think>\n")
    assert record["thinking_tokens"] == 6 and record["forced_mask"][6] == 1
    assert main(["generate", "--model", str(tiny_model_dir), "--prompt", ""]) == 1
    assert "--prompt is required" in capsys.readouterr().err
