"""Training across processes and machines: launch checks, node agreement, per-rank records.

``er train`` with ``num_processes > 1`` starts ``accelerate launch`` for this node
(:func:`launch_node`); inside the launch every process runs ``er train`` again and
:func:`trainers.launch.train` builds the trainer. On CPU the shipped
``accelerate/multi_cpu.yaml`` starts the processes with accelerate's torchrun launcher
(its ``multi_gpu`` type: the only accelerate launcher that starts several local
processes without MPI); with ``use_cpu`` each process then joins a ``MULTI_CPU``
job on the gloo backend.

What is checked, and when (each error names the field to change):

- before launching (:func:`check_launch_resources`, :func:`wait_for_main_process`):
  more processes per machine than CPU cores (CPU recipes) or CUDA devices (GPU
  recipes); on a machine of rank > 0, a ``main_process_ip:main_process_port`` that
  does not answer within ``rendezvous_timeout_s``;
- inside the launch, before any model is loaded (:func:`check_same_recipe`): every
  rank compares the settings that must agree (budgets, model, data, GRPO settings,
  :data:`AGREED_FIELDS`) with rank 0's, so two nodes started with different recipes
  refuse to train, naming the fields;
- while training: collectives time out after ``rendezvous_timeout_s`` (the process
  group's timeout, ``GRPOConfig.ddp_timeout``), and torchrun stops the other local
  processes when one dies, so a dead rank ends the job with an error instead of a hang.

Records (``record_ranks: true``, :func:`install_rank_records`): each process appends
JSON lines to ``<output_dir>/ranks/rank<r>.jsonl``: ``start`` (pid), one ``rollout``
per generation batch (problem ids, completion digests, token counts, cut flags), one
``reward`` per reward function call, and one ``weights`` digest (sha256 over all
parameters) per optimizer step; ``rank<r>.log.json`` holds the trainer's
``log_history`` at the end. Tests use them to check that ranks' rollouts are disjoint,
that the logged metrics are global and that the weights agree after every step.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from trainers.config import ConfigError, ERTrainConfig

__all__ = ["AGREED_FIELDS", "check_launch_resources", "check_same_recipe", "install_rank_records",
           "recipe_fingerprint", "wait_for_main_process", "weights_digest"]

#: settings every node of one job must share (machine_rank, output_dir and the reward URL may differ)
AGREED_FIELDS = ("model", "dataset", "dataset_split", "dataset_config", "dataset_limit", "dataset_format",
                 "template", "think_budget_tokens", "solution_budget_tokens", "train_forced_token", "group_size",
                 "temperature", "top_p", "top_k", "seed", "backend", "vllm_mode", "hf_batch_size", "num_processes",
                 "num_machines", "main_process_port", "on_reward_error", "on_reward_outage", "reward_retry_s",
                 "on_bad_problem", "grpo", "anytime_cuts", "anytime_solutions")


def _uses_cpu(cfg: ERTrainConfig) -> bool:
    if cfg.grpo.get("use_cpu"):
        return True
    try:
        import torch
    except ImportError:  # pragma: no cover - [train] brings torch
        return True
    return not torch.cuda.is_available()


def check_launch_resources(cfg: ERTrainConfig, *, cpu_count: int | None = None,
                           cuda_devices: int | None = None) -> None:
    """Refuse more processes on this machine than it has CPU cores or CUDA devices.

    Args:
        cfg: the config (``num_processes`` counts all machines).
        cpu_count: CPU cores (default: ``os.sched_getaffinity``/``os.cpu_count``).
        cuda_devices: CUDA devices (default: ``torch.cuda.device_count()``).

    Raises:
        ConfigError: naming ``num_processes`` and what this machine has.

    """
    per_node = cfg.num_processes // cfg.num_machines
    where = f" ({cfg.num_processes} over num_machines={cfg.num_machines})" if cfg.num_machines > 1 else ""
    if cfg.grpo.get("use_cpu"):
        if cpu_count is None:
            cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if per_node > cpu_count:
            raise ConfigError(f"num_processes={cfg.num_processes} asks for {per_node} training processes on this "
                              f"machine{where}, but it has {cpu_count} CPU cores; lower num_processes (one process "
                              "per core at most).")
        return
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count()
    if per_node > cuda_devices:
        raise ConfigError(f"num_processes={cfg.num_processes} asks for {per_node} GPU processes on this "
                          f"machine{where}, but it has {cuda_devices} CUDA devices; lower num_processes or set "
                          "grpo.use_cpu: true.")


def wait_for_main_process(cfg: ERTrainConfig, *, poll_s: float = 0.5) -> None:
    """On a machine of rank > 0: wait until the main node's rendezvous port accepts connections.

    Rank 0 opens the port when its launch starts, so the other nodes may start first; they
    wait at most ``rendezvous_timeout_s``.

    Raises:
        ConfigError: nothing answered at ``main_process_ip:main_process_port`` in time.

    """
    if cfg.num_machines <= 1 or cfg.machine_rank == 0:
        return
    host, port = str(cfg.main_process_ip), cfg.main_process_port
    deadline = time.monotonic() + cfg.rendezvous_timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, cfg.rendezvous_timeout_s)):
                return
        except OSError as exc:
            last = exc
            time.sleep(poll_s)
    raise ConfigError(f"main_process_ip {host}:{port} (main_process_port) did not answer within "
                      f"rendezvous_timeout_s={cfg.rendezvous_timeout_s} s ({type(last).__name__}: {last}); start "
                      "machine_rank 0 first, check the address and that the port is open between the machines.")


def recipe_fingerprint(cfg: ERTrainConfig) -> dict[str, Any]:
    """The settings of :data:`AGREED_FIELDS`, JSON-normalised (compared across ranks)."""
    return json.loads(json.dumps({name: getattr(cfg, name) for name in AGREED_FIELDS}, sort_keys=True, default=str))


def check_same_recipe(cfg: ERTrainConfig) -> None:
    """Inside a launch: every rank's :func:`recipe_fingerprint` must equal rank 0's.

    Called before any model is loaded; all ranks take part (one ``gather_object``).

    Raises:
        ConfigError: naming each differing field with both values.

    """
    from accelerate.utils import gather_object

    mine = recipe_fingerprint(cfg)
    everyone = gather_object([{"rank": int(os.environ.get("RANK", "0")), "machine_rank": cfg.machine_rank,
                               "recipe": mine}])
    main = everyone[0]["recipe"]
    diffs = []
    for other in everyone[1:]:
        for name in AGREED_FIELDS:
            if other["recipe"].get(name) != main.get(name):
                diffs.append(f"{name}: rank 0 has {main.get(name)!r}, rank {other['rank']} (machine_rank "
                             f"{other['machine_rank']}) has {other['recipe'].get(name)!r}")
    if diffs:
        raise ConfigError("The machines of this job were started with different recipes (nothing was loaded): "
                          + "; ".join(sorted(set(diffs))) + ". Start every node with the same recipe and overrides.")


def init_process_group(cfg: ERTrainConfig) -> Any:
    """Join the launch's process group with ``rendezvous_timeout_s`` as its collective timeout.

    Returns:
        accelerate's ``PartialState`` (the trainer reuses the process group).

    """
    from datetime import timedelta

    from accelerate import PartialState

    return PartialState(cpu=_uses_cpu(cfg), timeout=timedelta(seconds=cfg.rendezvous_timeout_s))


def weights_digest(model: Any) -> str:
    """sha256 over every parameter (name, dtype, shape and bytes, in name order)."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        tensor = param.detach()
        if hasattr(tensor, "full_tensor"):  # an FSDP2 shard (DTensor): digest the whole parameter (a collective)
            tensor = tensor.full_tensor()
        tensor = tensor.float().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class _Recorder:
    """Appends this process's JSON lines to ``<output_dir>/ranks/rank<r>.jsonl``."""

    def __init__(self, output_dir: str, rank: int) -> None:
        self.dir = Path(output_dir) / "ranks"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.path = self.dir / f"rank{rank}.jsonl"
        self.calls = 0

    def write(self, event: str, **fields: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": event, "rank": self.rank, "time": time.time(), **fields}) + "\n")
            fh.flush()


def _recording_rollout(rollout: Callable[..., dict[str, Any]], rec: _Recorder) -> Callable[..., dict[str, Any]]:
    from trainers.rollout import BUDGET_FIELD, TEXT_FIELD

    def recorded(prompts: Any, trainer: Any) -> dict[str, Any]:
        out = rollout(prompts, trainer)
        rec.write("rollout", call=rec.calls, step=trainer.state.global_step, prompts=list(prompts),
                  completions=[_text_digest(t) for t in out[TEXT_FIELD]],
                  completion_ids=out["completion_ids"],
                  **{k: list(out[k]) for k in ("thinking_tokens", "solution_tokens", "thinking_truncated",
                                                 "think_finish_reason", BUDGET_FIELD) if k in out})
        rec.calls += 1
        return out

    recorded.__name__ = getattr(rollout, "__name__", "rollout")
    for attr in ("problems_by_id", "budget", "sampling", "backend_name", "_prompt_ids", "_trl_vllm"):
        if hasattr(rollout, attr):
            setattr(recorded, attr, getattr(rollout, attr))
    return recorded


class _RecordingReward:
    """An async TRL reward function that records what the wrapped one returned."""

    def __init__(self, inner: Any, rec: _Recorder) -> None:
        self.inner, self.rec = inner, rec
        self.__name__ = inner.__name__

    def __getattr__(self, name: str) -> Any:  # the inner function's call report (last_errors, reset_call...)
        if name.startswith("__") or name in ("inner", "rec"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def __call__(self, prompts: Any, completions: Any, completion_ids: Any = None, **kwargs: Any) -> Any:
        from trainers.rollout import TEXT_FIELD

        out = await self.inner(prompts, completions, completion_ids, **kwargs)
        state = kwargs.get("trainer_state")
        self.rec.write("reward", func=self.__name__, step=getattr(state, "global_step", None),
                       problem_ids=list(kwargs.get("er_problem_id", [])), rewards=list(out),
                       completions=[_text_digest(t) for t in kwargs.get(TEXT_FIELD, [])])
        return out


def install_rank_records(cfg: ERTrainConfig, rollout: Any, reward_funcs: list[Any]) -> tuple[Any, list[Any], Any]:
    """Wrap the rollout and reward functions to record them; a callback records weights per step.

    Returns:
        ``(rollout, reward_funcs, callback)`` to build the trainer with.

    """
    from transformers import TrainerCallback

    rank = int(os.environ.get("RANK", "0"))
    rec = _Recorder(cfg.output_dir, rank)
    rec.write("start", pid=os.getpid(), machine_rank=cfg.machine_rank,
              world_size=int(os.environ.get("WORLD_SIZE", "1")))

    class RankRecords(TrainerCallback):  # type: ignore[misc]
        trainer: Any = None  # set by build_trainer once the trainer exists

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            acc = getattr(self.trainer, "accelerator", None)
            wrapped = getattr(self.trainer, "model_wrapped", None)
            rec.write("engine", distributed_type=str(getattr(getattr(acc, "state", None), "distributed_type", None)),
                      backend=str(getattr(getattr(acc, "state", None), "backend", None)),
                      wrapped=type(wrapped).__name__,
                      sharded=any(hasattr(p, "full_tensor") for p in (wrapped.parameters() if wrapped else ())),
                      device=str(getattr(acc, "device", None)))

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            rec.write("weights", step=state.global_step, sha256=weights_digest(model))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            (rec.dir / f"rank{rank}.log.json").write_text(json.dumps(state.log_history, default=str))

    callback = RankRecords()
    callback.recorder = rec
    return _recording_rollout(rollout, rec), [_RecordingReward(f, rec) for f in reward_funcs], callback
