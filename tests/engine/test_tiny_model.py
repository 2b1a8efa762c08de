"""The tiny model factory: loadable like a hub model, R1-distill tokens and template."""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from er_env.budget import SpecialTokens
from er_tools.tiny_model import (
    ASSISTANT,
    BOS,
    EOS,
    THINK_END,
    THINK_START,
    USER,
    TinyModelConfig,
    build_tiny_model,
    synthetic_corpus,
)


def test_loads_with_auto_classes(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.vocab_size == len(tok)
    assert (tok.bos_token, tok.eos_token) == (BOS, EOS)
    for special in (BOS, EOS, USER, ASSISTANT, THINK_START, THINK_END):
        assert len(tok.encode(special, add_special_tokens=False)) == 1, special
    sp = SpecialTokens.from_tokenizer(tok)
    assert sp.eos == frozenset({tok.eos_token_id}) and len(sp.think_end) == 1 and len(sp.think_start) == 1


def test_chat_template_is_r1_style(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi?"}], tokenize=False, add_generation_prompt=True)
    assert text == f"{BOS}{USER}Hi?{ASSISTANT}{THINK_START}\n"


def test_loaded_tokenizer_matches_saved_pipeline(tiny_model_dir):
    """AutoTokenizer may pick a model-specific class; its tokenization must match tokenizer.json."""
    from tokenizers import Tokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    raw = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    for text in synthetic_corpus(30, seed=3) + ["héllo  wörld\n\n x</think>y", "```python\nprint(1)\n```"]:
        assert tok.encode(text, add_special_tokens=False) == raw.encode(text, add_special_tokens=False).ids
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_multi_token_variant(tiny_multi_dir):
    tok = AutoTokenizer.from_pretrained(tiny_multi_dir)
    sp = SpecialTokens.from_tokenizer(tok)
    assert len(sp.think_end) > 1
    assert tok.decode(list(sp.think_end)) == THINK_END


def test_same_seed_same_weights_and_config_errors(tmp_path):
    small = dict(train_steps=3, corpus_size=40)
    a = build_tiny_model(tmp_path / "a", seed=5, **small)
    b = build_tiny_model(tmp_path / "b", seed=5, **small)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert json.loads((a / "tokenizer.json").read_text()) == json.loads((b / "tokenizer.json").read_text())
    with pytest.raises(ValueError, match="Unknown tiny-model settings"):
        build_tiny_model(tmp_path / "c", hidden_sizes=8)
    with pytest.raises(ValueError, match="not divisible"):
        TinyModelConfig(hidden_size=65)


def test_cli_builds_model(tmp_path, capsys):
    from er_cli import main

    out = tmp_path / "cli-model"
    assert main(["tiny-model", "--out", str(out), "--train-steps", "0", "--hidden-size", "32"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 32


def test_cli_reuses_a_model_built_with_the_same_settings(tmp_path, capsys):
    from er_cli import main

    out = tmp_path / "cli-model"
    args = ["tiny-model", "--out", str(out), "--train-steps", "0", "--hidden-size", "32"]
    assert main(args) == 0
    built = (out / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0  # same settings: reused, not rebuilt
    assert "already holds a tiny model" in capsys.readouterr().out
    assert (out / "model.safetensors").stat().st_mtime_ns == built
    assert main([*args[:-1], "48"]) == 0  # other settings: rebuilt
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 48
    assert main([*args[:-1], "48", "--force"]) == 0
    assert capsys.readouterr().out.strip().endswith(str(out))
