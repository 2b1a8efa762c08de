"""The serving edge: user-facing servers that put Elastic Reasoning budgets behind an HTTP API.

- :mod:`er_serving.proxy`: ``er proxy``, an OpenAI-compatible endpoint (chat and completions, streaming)
  that gives every request a thinking and a solution budget in front of any ``/v1/completions`` server
  (vLLM, SGLang, ``er serve``); needs the ``proxy`` extra.
- :mod:`er_serving.server`: ``er serve``, a small OpenAI-compatible ``/v1/completions`` server over
  transformers (CPU development server, the tests' real engine); needs the ``hf`` extra.

Dependencies go one way: ``er_serving`` imports ``er_env``; ``er_env`` never imports ``er_serving``.
"""
