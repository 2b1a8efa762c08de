#!/usr/bin/env bash
# E1-Math-1.5B with verl 0.9.1 (not run here: it needs 8 GPUs): GRPO from DeepScaleR-1.5B-Preview on the
# DeepScaleR-Preview dataset with the paper's budgets t* = s* = 1024, as arXiv 2505.05315 trains it
# (lr 1e-6, batch 128, 8 rollouts per prompt, temperature 0.6, KL 0.001, 200 steps).
#
#   make venv-verl && .venv-verl/bin/pip install 'verl[vllm]==0.9.1'     # on the GPU machine
#   ER_REWARD_ENDPOINT=http://reward-gateway:8000 bash er_integrations/recipes/verl_e1_math_1.5b.sh
#
# The reward is the project's grader (er_integrations.verl.compute_score): in-process unless
# ER_REWARD_ENDPOINT names a reward cluster (er sandbox serve / docker compose).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-agentica-org/DeepScaleR-1.5B-Preview}"
DATA="${DATA:-$HOME/er-data}"
PY="${PY:-python3}"

"$PY" - "$DATA" <<'PY'
import sys
from er_env.data import load_problems
from er_integrations.verl import write_parquet
out = sys.argv[1]
write_parquet(load_problems("agentica-org/DeepScaleR-Preview-Dataset"), f"{out}/deepscaler_train.parquet")
write_parquet(load_problems("aime2024"), f"{out}/aime2024.parquet")
PY

# t + </think> + s = 2049 response tokens: response_length must hold them all
"$PY" -m verl.trainer.main_ppo \
  algorithm.adv_estimator=grpo \
  algorithm.kl_ctrl.kl_coef=0.001 \
  data.train_files="$DATA/deepscaler_train.parquet" \
  data.val_files="$DATA/aime2024.parquet" \
  data.train_batch_size=128 \
  data.max_prompt_length=1024 \
  data.max_response_length=2049 \
  data.return_raw_chat=true \
  actor_rollout_ref.model.path="$MODEL" \
  actor_rollout_ref.model.use_remove_padding=true \
  actor_rollout_ref.model.enable_gradient_checkpointing=true \
  actor_rollout_ref.actor.optim.lr=1e-6 \
  actor_rollout_ref.actor.ppo_mini_batch_size=64 \
  actor_rollout_ref.actor.use_dynamic_bsz=true \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=32768 \
  actor_rollout_ref.actor.use_kl_loss=true \
  actor_rollout_ref.actor.kl_loss_coef=0.001 \
  actor_rollout_ref.actor.kl_loss_type=low_var_kl \
  actor_rollout_ref.rollout.name=vllm \
  actor_rollout_ref.rollout.mode=async \
  actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
  actor_rollout_ref.rollout.gpu_memory_utilization=0.85 \
  actor_rollout_ref.rollout.temperature=0.6 \
  actor_rollout_ref.rollout.n=8 \
  actor_rollout_ref.rollout.agent.agent_loop_config_path="$HERE/verl_agent_loops.yaml" \
  actor_rollout_ref.rollout.agent.default_agent_loop=elastic_reasoning \
  reward.custom_reward_function.path="$HERE/../verl.py" \
  reward.custom_reward_function.name=compute_score \
  trainer.n_gpus_per_node=8 \
  trainer.nnodes=1 \
  trainer.total_training_steps=200 \
  trainer.save_freq=10 \
  trainer.test_freq=10 \
  trainer.logger='[console]' \
  trainer.project_name=elastic-reasoning \
  trainer.experiment_name=e1-math-1.5b-t1024-s1024 \
  "$@"
