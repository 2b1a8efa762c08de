"""Developer tools around the ``er_env`` package (not part of its core).

- :mod:`er_tools.tiny_model`: a tiny R1-style Qwen2 model and byte-level BPE tokenizer, built locally
  (tests, demo, CPU recipes; no hub download).
- :mod:`er_tools.demo_model` / :mod:`er_tools.demo`: the ``make demo`` model and its budget sweep.
- :mod:`er_tools.serving`: ``er serve``, a small OpenAI-compatible dev server over transformers.

Dependencies go one way: ``er_tools`` imports ``er_env``; ``er_env`` never imports ``er_tools``.
"""
