"""er_env's HF backend as a reference for a venv without torch (the verifiers venv).

``python -m tests.integrations.hf_reference`` (run with .venv's Python) reads
``{"model": DIR, "cases": [{"prompt_ids": [...], "budget": {...}}]}`` on stdin and prints one
``BudgetedCompletion.to_dict()`` per case (greedy). :class:`CachedReference` computes a batch of cases
in one such process and then answers the conformance kit's ``generate`` calls from the results.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from er_env.budget import Budget, BudgetedCompletion

REPO = Path(__file__).resolve().parents[2]


def _key(prompt_ids: Sequence[int], budget: Budget) -> str:
    return json.dumps([list(prompt_ids), asdict(budget)])


class CachedReference:
    """A reference backend whose answers come from one HF-backend process run in another venv."""

    def __init__(self, python: str | Path, model_dir: str | Path, cases: list[tuple[list[int], Budget]]) -> None:
        payload = {"model": str(model_dir), "cases": [{"prompt_ids": p, "budget": asdict(b)} for p, b in cases]}
        proc = subprocess.run([str(python), "-m", "tests.integrations.hf_reference"], input=json.dumps(payload),
                              capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
        if proc.returncode:
            raise RuntimeError(f"the HF reference process failed:\n{proc.stderr[-3000:]}")
        self.results = {}
        for (prompt, budget), row in zip(cases, json.loads(proc.stdout.splitlines()[-1]), strict=True):
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in row.items()}
            self.results[_key(prompt, budget)] = BudgetedCompletion(**fields)

    def generate(self, prompts, budget, sampling=None):
        return [self.results[_key(p, budget)] for p in prompts]


def main() -> None:
    from er_env.backends.base import SamplingConfig
    from er_env.backends.hf import HFBackend

    request = json.load(sys.stdin)
    backend = HFBackend(request["model"], device="cpu")
    greedy = SamplingConfig(temperature=0.0)
    out = []
    for case in request["cases"]:
        [done] = backend.generate([case["prompt_ids"]], Budget(**case["budget"]), greedy)
        out.append(done.to_dict())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
