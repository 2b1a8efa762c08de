"""Settings of an evaluation run, budget syntax and the settings key (stdlib only).

Every sample is stored with a key: a hash of everything that changes its
distribution (model, backend, dataset, prompt, method, budget, sampling settings,
EOS rule, nested or not). A resumed run reuses a stored sample only when its key
and ``(problem_id, sample_index)`` match, so changing a budget or a setting never
silently reuses old results.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from er_env.budget import Budget, BudgetError

__all__ = ["BUDGET_FORMS", "EvalConfig", "EvalError", "budget_label", "parse_budgets", "settings_key"]

BUDGET_FORMS = "'T:S' (thinking and solution tokens, e.g. 1024:1024) or 'none' (one unconstrained pass)"
_BUDGET_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


class EvalError(ValueError):
    """Bad evaluation input: budgets, datasets, methods, results files, contest snapshots."""


def parse_budgets(text: str, max_tokens: int | None = None) -> list[Budget]:
    """Parse ``"1024:1024,2048:1024,none"``.

    Args:
        text: comma-separated budgets.
        max_tokens: the cap of ``none`` (``None``: the model context).

    Returns:
        The budgets, in order, duplicates removed.

    Raises:
        EvalError: an item is not of a valid form (the message quotes it).
    """
    out: list[Budget] = []
    items = [t for t in str(text).split(",")]
    if not any(t.strip() for t in items):
        raise EvalError(f"--budgets is empty; give a comma-separated list of {BUDGET_FORMS}.")
    for item in items:
        raw = item.strip()
        if raw.lower() in ("none", "full", "unconstrained"):
            budget = Budget.unconstrained(max_tokens=max_tokens)
        else:
            m = _BUDGET_RE.match(raw)
            if not m:
                raise EvalError(f"Bad budget {raw!r} in --budgets {text!r}; each item must be {BUDGET_FORMS}.")
            try:
                budget = Budget(think=int(m.group(1)), solution=int(m.group(2)))
            except BudgetError as exc:
                raise EvalError(f"Bad budget {raw!r}: {exc}") from None
        if budget not in out:
            out.append(budget)
    return out


def budget_label(budget: Budget) -> str:
    """``"1024:1024"`` or ``"none"``."""
    return "none" if not budget.constrained else f"{budget.think}:{budget.solution}"


@dataclass
class EvalConfig:
    """Settings of ``er eval run``.

    > Parameters that control the model and backend

    Attributes:
        model: hub name or local path (``hf``/``vllm``), or the served model id (``openai``).
        backend: ``hf``, ``vllm`` or ``openai``.
        endpoint: OpenAI-compatible server URLs, comma-separated (``openai``; several = data parallel).
        tokenizer: tokenizer path for ``openai`` (default: ``model``).
        device: ``hf`` device.
        batch_size: ``hf`` batch size.
        max_concurrency: requests in flight per endpoint (``openai``).

    > Parameters that control the data and prompts

    Attributes:
        dataset: dataset names or paths, comma-separated.
        data_files: local files for a hub dataset (``lcb``), comma-separated.
        format: row format of the datasets given as file paths (default: detected from the
            rows; see ``er_env.data.formats.ADAPTERS``).
        split: dataset split (default: the dataset's own; ``lcb``: ``test``).
        limit: first N problems of each dataset.
        prompt: ``auto``, ``deepscaler``, ``lcb`` or ``code``.

    > Parameters that control budgets, methods and sampling

    Attributes:
        budgets: comma-separated ``T:S`` or ``none``.
        methods: comma-separated method names (``er_env.eval.methods``).
        samples: samples per problem (K).
        pass_k: the k values of pass@k, comma-separated (default: ``1`` and K).
        nested: share thinking across budgets (``er_env.eval.nested``).
        temperature / top_p / top_k / seed: sampling.
        max_tokens: cap of the ``none`` budget.
        eos_in_thinking: ``force`` or ``end`` (``er_env.budget.Budget``).

    > Parameters that control grading and output

    Attributes:
        reward_endpoint: ``er sandbox serve`` URL (default: grade in-process).
        out: output directory.
        chunk_problems: problems per saved work unit (resume granularity).
    """

    model: str = field(default="", metadata={"help": "Model path / hub name, or the served model id (required)."})
    backend: str = field(default="hf", metadata={"help": "Backend: hf, vllm or openai."})
    endpoint: str | None = field(default=None, metadata={"help": "OpenAI server URL(s), comma-separated."})
    tokenizer: str | None = field(default=None, metadata={"help": "Tokenizer path for --backend openai."})
    device: str | None = field(default=None, metadata={"help": "Device for the hf backend."})
    batch_size: int = field(default=16, metadata={"help": "Batch size of the hf backend."})
    max_concurrency: int = field(default=64, metadata={"help": "Requests in flight per OpenAI endpoint."})
    dataset: str = field(default="", metadata={"help": "Dataset names or paths, comma-separated (required)."})
    data_files: str | None = field(default=None, metadata={"help": "Local files for a hub dataset (e.g. lcb)."})
    format: str | None = field(default=None, metadata={
        "help": "Row format of dataset files: math, olympiad_bench, codeforces, code_contests, leetcode, deepcoder, "
                "lcb or problem (default: detected from the rows)."})
    split: str | None = field(default=None, metadata={"help": "Dataset split (default: the dataset's own)."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate the first N problems of each dataset."})
    prompt: str = field(default="auto", metadata={"help": "Prompt: auto, deepscaler, lcb or code."})
    budgets: str = field(default="1024:1024", metadata={"help": f"Budgets: {BUDGET_FORMS}, comma-separated."})
    methods: str = field(default="elastic", metadata={"help": "Methods, comma-separated (elastic, truncation, ...)."})
    samples: int = field(default=1, metadata={"help": "Samples per problem (K)."})
    pass_k: str | None = field(default=None, metadata={"help": "k values of pass@k, comma-separated (default 1,K)."})
    nested: bool = field(default=True, metadata={"help": "Share each sample's thinking across budgets."})
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature (paper: 0.6)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus mass (paper: 0.95)."})
    top_k: int = field(default=-1, metadata={"help": "Top-k cutoff; -1 disables it."})
    seed: int | None = field(default=0, metadata={"help": "Sampling seed ('none': unseeded)."})
    max_tokens: int | None = field(default=None, metadata={"help": "Cap of the 'none' budget (default: context)."})
    eos_in_thinking: str = field(default="force", metadata={"help": "EOS while thinking: force </think> or end."})
    reward_endpoint: str | None = field(default=None, metadata={"help": "Reward service URL (default: in-process)."})
    out: str = field(default="", metadata={"help": "Output directory (required)."})
    chunk_problems: int = field(default=16, metadata={"help": "Problems per saved work unit (resume granularity)."})

    def __post_init__(self) -> None:
        from er_env.eval.methods import get_method

        for name in ("model", "dataset", "out"):
            if not getattr(self, name):
                raise EvalError(f"--{name} is required.")
        if self.backend not in ("hf", "vllm", "openai"):
            raise EvalError(f"Unknown backend {self.backend!r}; choose hf, vllm or openai.")
        if self.backend == "openai" and not self.endpoints:
            raise EvalError("--backend openai needs --endpoint URL (comma-separated for several servers).")
        for name in ("samples", "batch_size", "max_concurrency", "chunk_problems"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EvalError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}.")
        if self.format is not None:
            from er_env.data.formats import ADAPTERS

            if self.format not in ADAPTERS:
                raise EvalError(f"--format {self.format!r} is not a known row format; choose one of "
                                f"{sorted(ADAPTERS)}.")
        if self.eos_in_thinking not in ("force", "end"):
            raise EvalError(f"--eos-in-thinking must be 'force' or 'end', got {self.eos_in_thinking!r}.")
        self.budget_list()
        for name in self.method_names:
            get_method(name)
        ks = self.ks
        if any(k > self.samples for k in ks):
            raise EvalError(f"--pass-k {self.pass_k!r} asks for k > --samples {self.samples}; use k <= K.")

    @property
    def endpoints(self) -> list[str]:
        """The OpenAI endpoints to shard samples over."""
        return [e.strip() for e in (self.endpoint or "").split(",") if e.strip()]

    @property
    def method_names(self) -> list[str]:
        """The method names to run, in order."""
        names = [m.strip() for m in self.methods.split(",") if m.strip()]
        if not names:
            raise EvalError("--methods is empty; give e.g. elastic,truncation,s1.")
        return names

    @property
    def datasets(self) -> list[str]:
        """The dataset names to run, in order."""
        return [d.strip() for d in self.dataset.split(",") if d.strip()]

    @property
    def ks(self) -> list[int]:
        """The k values of pass@k."""
        if self.pass_k is None:
            return sorted({1, self.samples})
        try:
            ks = sorted({int(k) for k in str(self.pass_k).split(",") if k.strip()})
        except ValueError:
            raise EvalError(f"--pass-k must be comma-separated integers, got {self.pass_k!r}.") from None
        if not ks or ks[0] < 1:
            raise EvalError(f"--pass-k values must be >= 1, got {self.pass_k!r}.")
        return ks

    def budget_list(self) -> list[Budget]:
        """The parsed budgets, in order."""
        budgets = parse_budgets(self.budgets, self.max_tokens)
        return [Budget(think=b.think, solution=b.solution, max_tokens=b.max_tokens,
                       eos_in_thinking=self.eos_in_thinking) if b.constrained else b for b in budgets]

    def sampling_dict(self) -> dict[str, Any]:
        """The sampling settings as a plain dict (stored with every sample)."""
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed}


def settings_key(cfg: EvalConfig, dataset: str, method: str, budget: Budget) -> tuple[str, dict[str, Any]]:
    """The settings that define a cell's samples and their short hash.

    Returns:
        ``(key, settings)``: a 16-hex-digit hash and the dict it hashes.
    """
    settings = {
        "model": cfg.model, "backend": cfg.backend, "dataset": dataset, "prompt": cfg.prompt,
        "method": method, "think_budget_tokens": budget.think, "solution_budget_tokens": budget.solution,
        "max_tokens": budget.max_tokens, "eos_in_thinking": budget.eos_in_thinking,
        "nested": bool(cfg.nested) and budget.constrained, **cfg.sampling_dict(),
    }
    blob = json.dumps(settings, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16], settings
