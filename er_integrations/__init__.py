"""Elastic Reasoning from other RL stacks: one module per stack, each importing its framework lazily.

Above :mod:`er_env` and :mod:`sandbox` (nothing there imports this package). Every module takes its
budget rules from :mod:`er_env.budget`, its ``</think>``/EOS ids from :mod:`er_env.tokens` and its
rewards from :mod:`er_env.rewards`.
"""
