"""Evaluation: budget sweeps, baselines, pass@k, Codeforces rating, reports (``er eval``).

Built on the backends (``er_env.backends``: hf, vllm, openai; several OpenAI
servers through :class:`~er_env.eval.endpoints.EndpointPool`), the budget protocol
(``er_env.budget``) and the training graders (``er_env.rollout.RewardRouter``).

Modules:

- :mod:`~er_env.eval.config`: :class:`EvalConfig`, budget syntax, settings keys.
- :mod:`~er_env.eval.methods`: elastic, truncation, s1, qwen3, l1, vllm_native.
- :mod:`~er_env.eval.nested`: nested budget sweeps (think once, answer from each cut).
- :mod:`~er_env.eval.metrics`: pass@1 with a bootstrap CI, unbiased pass@k, token stats.
- :mod:`~er_env.eval.runner`: the resumable loop writing ``DIR/samples.jsonl``.
- :mod:`~er_env.eval.report`: ``results.json``, ``summary.md``, plots, Codeforces results.
- :mod:`~er_env.eval.codeforces`: the CodeElo rating as the official code computes it.
- :mod:`~er_env.eval.prompts`: the paper's math prompt and the official LiveCodeBench prompts.

Heavy imports (torch, matplotlib, httpx) happen inside the functions that need them.
"""

from __future__ import annotations

from er_env.eval.config import EvalConfig, EvalError, parse_budgets
from er_env.eval.methods import METHODS, Method, get_method
from er_env.eval.metrics import Summary, pass_at_k, summarize

__all__ = ["METHODS", "EvalConfig", "EvalError", "Method", "Summary", "get_method", "parse_budgets", "pass_at_k",
           "run_eval", "summarize"]


def run_eval(*args, **kwargs):
    """See :func:`er_env.eval.runner.run_eval`."""
    from er_env.eval.runner import run_eval as _run

    return _run(*args, **kwargs)
