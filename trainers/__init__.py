"""GRPO training with Elastic Reasoning rollouts, on TRL's ``GRPOTrainer`` (arXiv 2505.05315).

Modules: ``rollout`` (the ``rollout_func`` that generates under a thinking/solution
budget with the trainer's live policy and returns ``env_mask`` for forced ``</think>``),
``rewards`` (TRL reward functions over ``er_env.rewards``; grader failures give ``None``,
never 0), ``config`` (:class:`ERTrainConfig` and YAML recipes in ``recipes/``),
``launch`` (dry-run plans, ``accelerate`` commands, building and running the trainer),
``distributed`` (multi-process and multi-node checks: resources, the main node, recipe
agreement across ranks, per-rank records), ``vllm_rollout`` (rollouts on TRL's vLLM),
``checkpoints`` (complete-or-absent checkpoints, ``--resume`` resolution and recipe checks),
``resilience`` (the trainer subclass: exact resume, SIGTERM, reward outages, grader errors
out of the advantages), ``screening`` (training problems that cannot be trained on).
Backends: the live HF policy (``hf``) or TRL's own vLLM (``vllm``). TRL and torch are
imported only when used.

Example:
    $ er train --config tiny_cpu --dry-run
    $ er train --config trainers/recipes/tiny_cpu.yaml

"""

from trainers.config import ConfigError, ERTrainConfig, load_recipe
from trainers.rewards import code_reward, make_reward_func, math_reward
from trainers.rollout import ElasticRolloutFunc, make_rollout_func, problems_to_dataset

__all__ = [
    "ConfigError",
    "ERTrainConfig",
    "ElasticRolloutFunc",
    "code_reward",
    "load_recipe",
    "make_reward_func",
    "make_rollout_func",
    "math_reward",
    "problems_to_dataset",
]
