"""Developer tools around the ``er_env`` package (not part of its core).

- :mod:`er_tools.tiny_model`: a tiny R1-style Qwen2 model and byte-level BPE tokenizer, built locally
  (tests, demo, CPU recipes; no hub download).
- :mod:`er_tools.demo_model` / :mod:`er_tools.demo`: the ``make demo`` model and its budget sweep.
- :mod:`er_tools.qwen_vocab`: the real DeepSeek-R1-Distill-Qwen vocabulary, built locally.
- :mod:`er_tools.synthetic_arith`: the synthetic sums task of the Elastic Reasoning miniature.

The user-facing servers (``er serve``, ``er proxy``) live in :mod:`er_serving`.

Dependencies go one way: ``er_tools`` imports ``er_env``; ``er_env`` never imports ``er_tools``.
"""
