r"""Anytime (multi-cut) rollouts: tokens generated vs K independent budget-constrained rollouts.

``er train``'s anytime layout (:class:`trainers.budgets.AnytimeCuts`) thinks once per
sample and answers from K cuts through :func:`er_env.eval.nested.cut_and_continue`. The
alternative producing the same completions is K independent rollouts per sample, one per
cut budget, each regenerating the thinking. This script produces both on the same prompts
and model and counts the tokens the engine decoded (and the engine calls, and wall time)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_anytime.py            # tiny model, K = 1, 2, 4
    PYTHONPATH=. .venv/bin/python benchmarks/bench_anytime.py --model PATH --budgets 256,512,768,1024

Budgets: the K cut budgets are drawn per sample from ``--budgets``
(a uniform prior over that list, without replacement, seeded), exactly as training draws
them. Greedy decoding, so both sides decode the same tokens (checked: the completions are
compared one by one and the script fails if any differ).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="Model path ('tiny': er_env's tiny test model).")
    p.add_argument("--budgets", default="32,64,96,128", help="Prior support: thinking budgets (comma list).")
    p.add_argument("--solution", type=int, default=32, help="Solution budget s.")
    p.add_argument("--ks", default="1,2,4", help="K values to measure (comma list).")
    p.add_argument("--n", type=int, default=1, help="Solutions per cut.")
    p.add_argument("--samples", type=int, default=8, help="Thinking passes (prompts).")
    p.add_argument("--seed", type=int, default=0, help="Seed of the budget draws.")
    return p.parse_args(argv)


class Counting:
    """A backend wrapper counting engine calls and decoded tokens."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.special, self.context_length = inner, inner.special, inner.context_length
        self.calls = 0
        self.tokens = 0

    def generate(self, prompts: Any, budget: Any, sampling: Any = None) -> Any:
        """Delegate and count."""
        out = self.inner.generate(prompts, budget, sampling)
        self.calls += 1
        self.tokens += sum(c.thinking_tokens + c.solution_tokens for c in out)
        return out


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print a Markdown table."""
    args = parse_args(argv)
    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend
    from er_env.budget import Budget
    from er_tools.tiny_model import build_tiny_model, tiny_prompts
    from trainers.budgets import AnytimeCuts, BudgetPrior, RolloutLayout

    model = args.model
    if model == "tiny":
        model = str(Path(tempfile.mkdtemp()) / "tiny")
        build_tiny_model(model)
    backend = HFBackend(model, device="cpu", batch_size=16)
    prompts = [backend.chat_prompt(q) for q in tiny_prompts(args.samples)]
    prior = BudgetPrior.parse([int(x) for x in args.budgets.split(",")])
    greedy = SamplingConfig(temperature=0.0)
    print(f"model={args.model} prior={prior.describe()} s={args.solution} n={args.n} samples={len(prompts)} greedy\n")
    print("| K | completions | anytime: tokens | anytime: calls | anytime: s | independent: tokens | "
          "independent: calls | independent: s | tokens ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in (int(x) for x in args.ks.split(",")):
        per = k * args.n
        strategy = AnytimeCuts(Budget(think=prior.max, solution=args.solution), prior, k, args.n)
        layout = RolloutLayout(0, 1, per, args.seed, 0)
        batch = [p for p in prompts for _ in range(per)]
        shared = Counting(backend)
        t0 = time.perf_counter()
        out = strategy.generate(shared, batch, greedy, layout)
        t_shared = time.perf_counter() - t0
        indep = Counting(backend)
        t0 = time.perf_counter()
        by_budget: dict[int, list[int]] = {}  # independent rollouts, batched per budget as a trainer would
        for s in range(len(prompts)):
            for t in strategy.cuts(layout, s):
                by_budget.setdefault(t, []).extend([s] * args.n)
        ref: dict[tuple[int, int], list[Any]] = {}
        for t, idx in by_budget.items():
            res = indep.generate([prompts[s] for s in idx], Budget(think=t, solution=args.solution), greedy)
            for s, c in zip(idx, res, strict=True):
                ref.setdefault((s, t), []).append(c)
        t_indep = time.perf_counter() - t0
        for s in range(len(prompts)):
            for b, t in enumerate(strategy.cuts(layout, s)):
                for m in range(args.n):
                    if out[s * per + b * args.n + m].completion_ids != ref[(s, t)][m].completion_ids:
                        raise SystemExit(f"sample {s} cut {t}: anytime and independent completions differ")
        print(f"| {k} | {len(out)} | {shared.tokens} | {shared.calls} | {t_shared:.1f} | {indep.tokens} | "
              f"{indep.calls} | {t_indep:.1f} | {shared.tokens / indep.tokens:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
