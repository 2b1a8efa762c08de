r"""A tiny R1-distill-style reasoning model, built locally in seconds.

:func:`build_tiny_model` writes a small Qwen2-architecture causal LM and a
byte-level BPE tokenizer with DeepSeek-R1-distill special tokens
(``<｜begin▁of▁sentence｜>``, ``<｜end▁of▁sentence｜>``, ``<｜User｜>``,
``<｜Assistant｜>``, ``<think>``, ``</think>``) and chat template (the generation
prompt ends with ``<｜Assistant｜><think>\\n``). Everything is made on the spot with
the ``tokenizers`` library and ``torch``; nothing comes from a model hub, and
nothing is cached outside ``out_dir``.

The model is briefly trained (a few hundred CPU steps, seeded) on a synthetic corpus
of R1-style completions (``...reasoning...</think>`` then an answer and EOS), so that
greedy decoding closes ``</think>`` and ends with EOS on its own at lengths that vary
with the prompt. Tests, demos and benchmarks use it as a stand-in for a real
reasoning model: ``AutoModelForCausalLM`` / ``AutoTokenizer`` (and vLLM) load the
directory like any hub checkpoint.

Example:
    >>> from er_tools.tiny_model import build_tiny_model  # doctest: +SKIP
    >>> path = build_tiny_model("/tmp/tiny-r1")  # doctest: +SKIP

"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sandbox.core.extract import THINK_END  # the one definition of the completion format

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "USER",
    "ASSISTANT",
    "THINK_START",
    "THINK_END",
    "build_tiny_tokenizer",
    "CHAT_TEMPLATE",
    "VLLM_OVERRIDES",
    "TinyModelConfig",
    "build_tiny_model",
    "synthetic_corpus",
    "tiny_prompts",
]

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_START = "<think>"

#: R1-distill-style template: BOS, system text, user turns, and a generation prompt
#: that opens the thinking block (``<｜Assistant｜><think>\n``).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{ message['content'] }}"
    "{%- elif message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{%- endif %}"
)

#: Qwen2's pre-tokenization regex (the R1-distill-Qwen tokenizers use it)
_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""  # noqa: E501
)

#: :class:`TinyModelConfig` overrides for a vLLM-loadable variant: vLLM's CPU attention
#: supports head sizes 32, 64, 80, ... but not the default's 64 / 4 = 16. Same width and
#: layers, 2 query heads and 1 key/value head (head size 32):
#: ``build_tiny_model(out, **VLLM_OVERRIDES)``. The default model is unchanged.
VLLM_OVERRIDES: dict[str, Any] = {"num_attention_heads": 2, "num_key_value_heads": 1}

_CODE_TASKS = [
    ("returns the square of x", "Multiply x by itself.", "def f(x):\n    return x * x"),
    ("returns the sum of a list xs", "Loop over xs and add each item.", "def f(xs):\n    return sum(xs)"),
    ("reverses a string s", "Slicing with step -1 reverses it.", "def f(s):\n    return s[::-1]"),
    ("returns the maximum of a and b", "Compare a and b. Keep the larger one.", "def f(a, b):\n    return max(a, b)"),
    ("counts the vowels in s", "Check each char. Count it if it is a vowel.",
     "def f(s):\n    return sum(c in 'aeiou' for c in s)"),
]


@dataclass
class TinyModelConfig:
    """Size and training settings of the tiny model.

    > Parameters that control the architecture

    Attributes:
        hidden_size: model width.
        num_hidden_layers: decoder layers.
        num_attention_heads: query heads (``hidden_size`` must divide evenly).
        num_key_value_heads: key/value heads (grouped-query attention).
        intermediate_size: MLP width.
        max_position_embeddings: context length in tokens.
        vocab_size: BPE vocabulary size target (special tokens added on top).

    > Parameters that control training

    Attributes:
        train_steps: optimizer steps on the synthetic corpus (0: random weights).
        batch_size: sequences per step.
        learning_rate: AdamW learning rate.
        corpus_size: synthetic documents generated.

    """

    hidden_size: int = field(default=64, metadata={"help": "Model width."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Decoder layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads."})
    num_key_value_heads: int = field(default=2, metadata={"help": "Key/value heads."})
    intermediate_size: int = field(default=128, metadata={"help": "MLP width."})
    max_position_embeddings: int = field(default=512, metadata={"help": "Context length in tokens."})
    vocab_size: int = field(default=384, metadata={"help": "BPE vocabulary size (before special tokens)."})
    train_steps: int = field(default=150, metadata={"help": "Training steps on the synthetic corpus (0: random)."})
    batch_size: int = field(default=16, metadata={"help": "Sequences per training step."})
    learning_rate: float = field(default=5e-3, metadata={"help": "AdamW learning rate."})
    corpus_size: int = field(default=400, metadata={"help": "Synthetic documents generated."})

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; pick sizes such that it is."
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not divisible by num_key_value_heads="
                f"{self.num_key_value_heads}."
            )
        if self.vocab_size < 300:
            raise ValueError(f"vocab_size={self.vocab_size} is too small for a byte-level BPE; use >= 300.")


def _math_doc(rng: random.Random) -> tuple[str, str]:
    terms = [rng.randint(1, 20) for _ in range(rng.randint(2, 6))]
    question = "What is " + " + ".join(map(str, terms)) + "?"
    steps = [f"Start with {terms[0]}."]
    total = terms[0]
    for t in terms[1:]:
        total += t
        steps.append(f"Add {t} to get {total}.")
    steps.append(f"So the sum is {total}.")
    return question, " ".join(steps) + f"\n{THINK_END}\n\nThe answer is \\boxed{{{total}}}."


def _code_doc(rng: random.Random) -> tuple[str, str]:
    task, plan, code = rng.choice(_CODE_TASKS)
    return f"Write a function f that {task}.", f"{plan}\n{THINK_END}\n\n```python\n{code}\n```"


def synthetic_corpus(n: int, seed: int = 0) -> list[str]:
    r"""R1-style training documents: template-formatted prompt + reasoning + answer + EOS.

    Args:
        n: number of documents.
        seed: RNG seed (the corpus is a pure function of ``n`` and ``seed``).

    Returns:
        Texts of the form ``BOS<｜User｜>Q<｜Assistant｜><think>\\n...</think>\\n\\nA EOS``.

    """
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        question, answer = (_code_doc if rng.random() < 0.25 else _math_doc)(rng)
        docs.append(f"{BOS}{USER}{question}{ASSISTANT}{THINK_START}\n{answer}{EOS}")
    return docs


def tiny_prompts(n: int = 4, seed: int = 1) -> list[str]:
    """User questions in the style of the corpus (for tests and demos)."""
    rng = random.Random(seed)
    return [(_code_doc if i % 4 == 3 else _math_doc)(rng)[0] for i in range(n)]


def _build_tokenizer(
    corpus: list[str], vocab_size: int, think_end_single_token: bool, model_max_length: int = 512
) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [BOS, EOS, PAD, USER, ASSISTANT, THINK_START] + ([THINK_END] if think_end_single_token else [])
    tok = Tokenizer(models.BPE())
    # the Qwen2 pipeline, so that whichever class (Qwen2Tokenizer, TokenizersBackend,
    # PreTrainedTokenizerFast) loads the files, text tokenizes the same way
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(specials),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left",
        model_max_length=model_max_length,
    )
    fast.add_special_tokens({"additional_special_tokens": specials[3:]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _train(model: Any, tokenizer: Any, corpus: list[str], cfg: TinyModelConfig, seed: int) -> None:
    import torch

    encoded = [tokenizer.encode(doc, add_special_tokens=False) for doc in corpus]
    pad = tokenizer.pad_token_id
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / max(1, cfg.train_steps))
    model.train()
    for _ in range(cfg.train_steps):
        idx = torch.randint(len(encoded), (cfg.batch_size,), generator=gen).tolist()
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((cfg.batch_size, width), pad, dtype=torch.long)
        mask = torch.zeros((cfg.batch_size, width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[row, : len(encoded[i])] = 1
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()


def _checked_tokenizer(corpus: list[str], cfg: TinyModelConfig, think_end_single_token: bool) -> Any:
    if not corpus:
        raise ValueError("No training texts: set corpus_size > 0 or pass extra_documents.")
    tokenizer = _build_tokenizer(corpus, cfg.vocab_size, think_end_single_token, cfg.max_position_embeddings)
    n_end = len(tokenizer.encode(THINK_END, add_special_tokens=False))
    if (n_end == 1) != think_end_single_token:
        raise RuntimeError(f"{THINK_END!r} encodes to {n_end} tokens; expected single={think_end_single_token}.")
    return tokenizer


def build_tiny_tokenizer(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write only the tiny model's tokenizer (the default corpus and sizes) to ``out_dir``.

    This is the tokenizer ``er_env`` ships as its bundled default
    (``er_env/envs/tiny_tokenizer``); ``tests/envs/test_env_defaults.py`` checks the
    shipped files equal a fresh build.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`, loadable with ``AutoTokenizer.from_pretrained``.

    """
    cfg = TinyModelConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _checked_tokenizer(synthetic_corpus(cfg.corpus_size, seed=seed), cfg, True)
    tokenizer.save_pretrained(out)
    _patch_tokenizer_config(out / "tokenizer_config.json")
    return out


def build_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    think_end_single_token: bool = True,
    config: TinyModelConfig | None = None,
    extra_documents: Sequence[str] = (),
    **overrides: Any,
) -> Path:
    """Write a tiny R1-distill-style model + tokenizer to ``out_dir``.

    Args:
        out_dir: directory to create (or overwrite files in).
        seed: seed for the corpus, the initial weights and training order; the same
            seed on the same machine gives the same weights.
        think_end_single_token: if False, ``</think>`` is *not* a special token and
            encodes to several BPE tokens (for testing multi-token delimiters).
        config: sizes and training settings (default :class:`TinyModelConfig`).
        **overrides: fields of :class:`TinyModelConfig` to change, e.g.
            ``hidden_size=256, train_steps=0``.
        extra_documents: full training texts (``BOS<｜User｜>...EOS``, e.g. chat-templated
            prompts with their gold completions) added to the synthetic corpus, for both
            the tokenizer and training; empty by default (the corpus is then unchanged).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`, loadable with
        ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``.

    Raises:
        ValueError: an override names no :class:`TinyModelConfig` field, or the sizes
            are inconsistent.

    """
    import dataclasses

    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    cfg = config or TinyModelConfig()
    unknown = set(overrides) - {f.name for f in dataclasses.fields(TinyModelConfig)}
    if unknown:
        raise ValueError(f"Unknown tiny-model settings {sorted(unknown)}; valid: {sorted(cfg.__dict__)}.")
    cfg = dataclasses.replace(cfg, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    corpus = synthetic_corpus(cfg.corpus_size, seed=seed) + [str(doc) for doc in extra_documents]
    tokenizer = _checked_tokenizer(corpus, cfg, think_end_single_token)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    try:
        # one thread: deterministic reductions, and far faster than contended threads
        # for a model this small
        torch.set_num_threads(1)
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(model_config)
        if cfg.train_steps > 0:
            _train(model, tokenizer, corpus, cfg, seed)
    finally:
        torch.random.set_rng_state(state)
        torch.set_num_threads(threads)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, do_sample=False,
    )
    from er_env.quiet import quiet_model_loading

    with quiet_model_loading():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    _patch_tokenizer_config(out / "tokenizer_config.json")
    return out


def _patch_tokenizer_config(path: Path) -> None:
    """Name a tokenizer class that transformers 4.x (e.g. under vLLM) and 5.x both resolve.

    ``unk_token`` is set to null explicitly: the Qwen2 tokenizer class otherwise adds
    an ``<|endoftext|>`` unknown token, growing the vocabulary past the model's.
    """
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    data["tokenizer_class"] = "Qwen2TokenizerFast"
    data["unk_token"] = None
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
