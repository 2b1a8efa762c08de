"""The end-to-end demo: tiny model, Math and Code episodes under several budgets, local rewards.

:func:`run_demo` builds the demo's tiny R1-style model (``er_tools.demo_model``: the
tiny model also trained, for about a minute of CPU, on the embedded problems' own
rendered prompts and gold completions; cached in the output directory), loads the
embedded problem set, and for each ``(t, s)`` budget runs every problem through
:func:`er_env.rollout.rollout` (one batched generate call for all episodes, the
budget protocol of ``er_env.budget``, the in-process math checker and code judge),
writes the episode records as JSONL and prints one table per budget: mean reward,
thinking tokens, solution tokens and the forced-cut rate (share of episodes whose
``</think>`` the environment had to force). CPU only; no downloads.

Example:
    >>> from er_tools.demo import DemoConfig, run_demo  # doctest: +SKIP
    >>> run_demo(DemoConfig(out="runs/demo", budgets="16:16,48:32"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from er_env.budget import Budget
from er_env.rollout import EpisodeRecord, RewardRouter, rollout, write_jsonl

__all__ = ["DemoConfig", "DemoResult", "parse_budgets", "run_demo", "summarise"]


@dataclass
class DemoConfig:
    """Settings of ``er demo``.

    > Parameters that control the run

    Attributes:
        out: output directory (tiny model cache, JSONL records, summary.json).
        budgets: comma-separated ``t:s`` budgets (thinking:solution tokens).
        math_problems: how many embedded math problems to run (``None``: all 13).
        code_problems: how many embedded code problems to run (``None``: all 8).
        group_size: samples per problem.
        temperature: sampling temperature (0: greedy).
        seed: sampling seed.
        model: a local model directory to use instead of the tiny model.
        reward_endpoint: reward service URL (``None``: in-process rewards).
    """

    out: str = field(default="runs/demo", metadata={"help": "Output directory (model cache, JSONL records)."})
    budgets: str = field(default="16:16,32:48,64:128", metadata={"help": "Comma-separated t:s token budgets."})
    math_problems: int | None = field(default=None, metadata={"help": "Embedded math problems to run (None: all)."})
    code_problems: int | None = field(default=None, metadata={"help": "Embedded code problems to run (None: all)."})
    group_size: int = field(default=2, metadata={"help": "Samples per problem."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature; 0 = greedy."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    model: str | None = field(default=None, metadata={"help": "Local model dir (default: the tiny model in OUT)."})
    reward_endpoint: str | None = field(default=None, metadata={"help": "Reward service URL (None: in-process)."})

    def __post_init__(self) -> None:
        parse_budgets(self.budgets)
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}.")


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced.

    Attributes:
        summary: one row per (budget, task): the table's numbers.
        records_paths: JSONL file per budget label (``"t16_s16"``).
        summary_path: ``summary.json``.
        seconds: wall time of the whole run.
    """

    summary: list[dict[str, Any]]
    records_paths: dict[str, Path]
    summary_path: Path
    seconds: float


def parse_budgets(text: str) -> list[Budget]:
    """Parse ``"16:16,48:32"`` into budgets.

    Raises:
        ValueError: an entry that is not ``t:s`` with positive integers.
    """
    out = []
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        t, sep, s = part.partition(":")
        if not sep or not t.strip().isdigit() or not s.strip().isdigit() or int(t) <= 0 or int(s) <= 0:
            raise ValueError(
                f"Bad budget {part!r} in {text!r}: write thinking:solution token counts, e.g. '32:32,64:48'."
            )
        out.append(Budget(think=int(t), solution=int(s)))
    if not out:
        raise ValueError(f"No budgets in {text!r}: write e.g. '32:32,64:48'.")
    return out


def summarise(records: Sequence[EpisodeRecord]) -> list[dict[str, Any]]:
    """Per-task means: reward (grader errors excluded), thinking/solution tokens, forced-cut rate.

    ``forced_cut_rate`` is the share of episodes whose ``</think>`` was forced (thinking
    budget hit, or EOS while thinking); ``context_truncated_rate`` the share that ended
    because the model context was full.
    """
    rows = []
    for task in sorted({r.task for r in records}):
        recs = [r for r in records if r.task == task]
        scored = [r.reward for r in recs if not r.is_error]
        rows.append({
            "task": task, "episodes": len(recs),
            "reward": sum(scored) / len(scored) if scored else math.nan,
            "thinking_tokens": sum(r.completion.thinking_tokens for r in recs) / len(recs),
            "solution_tokens": sum(r.completion.solution_tokens for r in recs) / len(recs),
            "forced_cut_rate": sum(r.completion.thinking_truncated for r in recs) / len(recs),
            "context_truncated_rate": sum(r.completion.finish_reason == "length" for r in recs) / len(recs),
            "grader_errors": len(recs) - len(scored),
        })
    return rows


def _print_table(console: Any, budget: Budget, rows: list[dict[str, Any]], path: Path, timings: dict) -> None:
    from rich import box
    from rich.table import Table

    title = (f"Budget t={budget.think}, s={budget.solution}  (generate {timings['generate_s']:.1f} s, "
             f"rewards {timings['reward_s']:.1f} s)")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("task", "episodes", "reward", "think tok", "sol tok", "forced cut", "ctx full", "errors"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for r in rows:
        table.add_row(r["task"], str(r["episodes"]), f"{r['reward']:.3f}", f"{r['thinking_tokens']:.1f}",
                      f"{r['solution_tokens']:.1f}", f"{r['forced_cut_rate']:.0%}",
                      f"{r['context_truncated_rate']:.0%}", str(r["grader_errors"]))
    console.print(table)
    console.print(f"  episode records: {path}")


def _model_dir(cfg: DemoConfig, console: Any) -> Path:
    if cfg.model:
        return Path(cfg.model)
    path = Path(cfg.out) / "tiny-model"
    from er_tools.demo_model import build_demo_model, is_demo_model

    if not is_demo_model(path):
        console.print(f"Building the demo's tiny model in {path}, trained on the embedded problems "
                      "(about a minute; cached for later runs)...")
        build_demo_model(path)
    return path


def run_demo(cfg: DemoConfig, console: Any = None) -> DemoResult:
    """Run the demo (see the module docstring).

    Args:
        cfg: settings.
        console: a ``rich.console.Console`` (default: a new one on stdout).

    Returns:
        The summary and where the records were written.

    Raises:
        BackendError, RewardError: generation or grading failed outright.
    """
    from rich.console import Console

    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend
    from er_env.data import load_problems

    console = console or Console()
    start = time.perf_counter()
    out = Path(cfg.out)
    backend = HFBackend(str(_model_dir(cfg, console)), device="cpu")
    problems = load_problems("embedded:math", limit=cfg.math_problems) + load_problems(
        "embedded:code", limit=cfg.code_problems)
    sampling = SamplingConfig(temperature=cfg.temperature, seed=cfg.seed)
    rewards = RewardRouter(None, cfg.reward_endpoint)
    console.print(f"{len(problems)} problems x {cfg.group_size} samples per budget; rewards: "
                  f"{cfg.reward_endpoint or 'in-process math checker + code judge'}")
    summary, paths = [], {}
    for budget in parse_budgets(cfg.budgets):
        timings: dict[str, float] = {}
        records = rollout(backend, problems, budget, sampling, rewards, group_size=cfg.group_size, timings=timings)
        label = f"t{budget.think}_s{budget.solution}"
        paths[label] = write_jsonl(records, out / f"episodes_{label}.jsonl")
        rows = summarise(records)
        _print_table(console, budget, rows, paths[label], timings)
        summary += [{"think_budget_tokens": budget.think, "solution_budget_tokens": budget.solution, **r} for r in rows]
    console.print("Columns: think/sol tok = mean sampled tokens per phase; forced cut = share of episodes whose "
                  "</think> was forced; ctx full = share that hit the model context; errors = grader failures "
                  "(excluded from the reward mean, never counted as 0).")
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps({"config": asdict(cfg), "rows": summary}, indent=1, default=str))
    seconds = time.perf_counter() - start
    console.print(f"Done in {seconds:.1f} s. Records: {out}/episodes_*.jsonl; summary: {summary_path}")
    if not cfg.model:
        console.print("Note: the demo's tiny model was trained on these very problems (their prompts, a short "
                      "reasoning, the gold answer or reference solution), so its rewards show the pipeline - "
                      "prompt templates, budget forcing, the real graders - not generalisation. Where the "
                      "thinking budget cuts the memorised reasoning, or the solution budget cuts the answer, "
                      "the reward drops.")
    return DemoResult(summary, paths, summary_path, seconds)
