"""``er proxy``: an OpenAI-compatible endpoint that serves Elastic Reasoning budgets over any upstream.

A request's thinking budget (``thinking_token_budget`` / ``max_thinking_tokens`` /
``reasoning_effort``) and solution budget (``solution_token_budget``) are enforced by the
two-phase protocol of :class:`er_env.backends.openai.OpenAIBackend`: a thinking call
capped at t, a forced ``</think>`` when needed, a solution call capped at s, both with
token-id prompts on one upstream that speaks ``/v1/completions`` (vLLM, SGLang,
``er serve``). Modules:

- :mod:`~er_serving.proxy.config`: :class:`ProxyConfig` (flags and YAML file).
- :mod:`~er_serving.proxy.wire`: request bodies and OpenAI-style errors.
- :mod:`~er_serving.proxy.budgets`: request fields -> ``Budget`` and sampling.
- :mod:`~er_serving.proxy.pool`: upstreams, least-loaded choice, health checks.
- :mod:`~er_serving.proxy.render` / :mod:`~er_serving.proxy.streaming`: whole and SSE answers.
- :mod:`~er_serving.proxy.app`: the FastAPI app (``create_app``).

Needs the ``proxy`` extra (FastAPI, uvicorn, prometheus-client).
"""

from er_serving.proxy.config import ProxyConfig

__all__ = ["ProxyConfig"]
