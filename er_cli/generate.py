"""``er generate``: one budgeted completion for a prompt, printed as JSON."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from er_cli import add_dataclass_args


@dataclass
class GenerateConfig:
    """Settings of ``er generate``.

    > Parameters that control the model and backend

    Attributes:
        model: hub name or local path of the model.
        backend: ``hf``, ``vllm`` or ``openai``.
        device: device for the ``hf`` backend (default: CUDA if available).
        base_url: server URL for the ``openai`` backend.
        tokenizer: the model's tokenizer (local dir or hub name) for the ``openai`` backend,
            which only sees token ids; default: ``--model`` when it is a local directory.

    > Parameters that control the prompt

    Attributes:
        prompt: the user message (or the whole prompt text with ``raw_prompt``).
        system: optional system text placed before the user turn.
        raw_prompt: tokenize ``prompt`` as is, without the chat template.

    > Parameters that control the budget and sampling

    Attributes:
        think: thinking budget t (``none``: one unconstrained pass).
        solution: solution budget s.
        max_tokens: cap for an unconstrained pass.
        temperature: 0 is greedy.
        top_p: nucleus mass.
        top_k: top-k cutoff (-1: off).
        seed: sampling seed.

    """

    model: str = field(default="", metadata={"help": "Hub name or local path of the model (required)."})
    prompt: str = field(default="", metadata={"help": "User message (required)."})
    think: int | None = field(default=1024, metadata={"help": "Thinking budget t in tokens; 'none' = unconstrained."})
    solution: int | None = field(default=1024, metadata={"help": "Solution budget s in tokens."})
    max_tokens: int | None = field(default=None, metadata={"help": "Cap for an unconstrained pass (--think none)."})
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature; 0 = greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    top_k: int = field(default=-1, metadata={"help": "Top-k cutoff; -1 disables it."})
    seed: int | None = field(default=None, metadata={"help": "Sampling seed."})
    backend: str = field(default="hf", metadata={"help": "Backend: hf, vllm or openai."})
    device: str | None = field(default=None, metadata={"help": "Device for the hf backend (cpu, cuda, ...)."})
    base_url: str | None = field(default=None, metadata={"help": "Server URL for the openai backend."})
    tokenizer: str | None = field(default=None, metadata={
        "help": "Tokenizer (local dir or hub name) for the openai backend; default: --model if it is a local dir."})
    system: str | None = field(default=None, metadata={"help": "System text placed before the user turn."})
    raw_prompt: bool = field(default=False, metadata={"help": "Tokenize --prompt as is (no chat template)."})

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("--model is required (a hub name or a local path, e.g. one from `er tiny-model`).")
        if not self.prompt:
            raise ValueError("--prompt is required.")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``generate`` subcommand."""
    parser = subparsers.add_parser(
        "generate", help="Generate one budgeted completion and print it as JSON.",
        description="Apply the chat template to --prompt, run thinking (<= --think tokens, </think> forced "
        "if needed) then the solution (<= --solution tokens), and print the BudgetedCompletion as JSON.",
    )
    add_dataclass_args(parser, GenerateConfig, required=("model", "prompt"))
    parser.set_defaults(func=_run)


def _make_backend(cfg: GenerateConfig):
    from er_env.backends.base import load_backend

    if cfg.backend == "hf":
        return load_backend("hf", model=cfg.model, device=cfg.device)
    if cfg.backend == "openai":
        if not cfg.base_url:
            raise ValueError("--backend openai needs --base-url (e.g. http://localhost:8000/v1).")
        tokenizer = cfg.tokenizer
        if tokenizer is None:
            if not Path(cfg.model).expanduser().is_dir():
                raise ValueError(f"--backend openai needs --tokenizer (a local dir or hub name): --model "
                                 f"{cfg.model!r} is the server's model id, not a local directory to load it from.")
            tokenizer = cfg.model
        return load_backend("openai", base_url=cfg.base_url, model=cfg.model, tokenizer=tokenizer)
    return load_backend(cfg.backend, model=cfg.model)


def _run(ns: argparse.Namespace) -> int:
    from er_cli import dataclass_from_args
    from er_env.backends.base import SamplingConfig
    from er_env.budget import Budget

    cfg = dataclass_from_args(GenerateConfig, ns)
    if cfg.think is None:
        budget = Budget.unconstrained(max_tokens=cfg.max_tokens)
    else:
        budget = Budget(think=cfg.think, solution=cfg.solution, max_tokens=cfg.max_tokens)
    sampling = SamplingConfig(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, seed=cfg.seed)
    backend = _make_backend(cfg)
    try:
        if cfg.raw_prompt:
            text = cfg.prompt
        else:
            messages = ([{"role": "system", "content": cfg.system}] if cfg.system else []) + [
                {"role": "user", "content": cfg.prompt}
            ]
            text = backend.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        result = backend.generate([backend.encode(text)], budget, sampling)[0]
    finally:
        backend.close()
    record = {"prompt_text": text, "budget": {"think": budget.think, "solution": budget.solution}}
    record.update(result.to_dict())
    if record.get("text") is None:
        record["text"] = backend.decode(result.completion_ids)
    print(json.dumps(record, ensure_ascii=False))
    return 0
