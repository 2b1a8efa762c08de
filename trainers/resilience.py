"""What a long ``er train`` run needs on top of TRL's ``GRPOTrainer``: exact resume, preemption, reward outages.

:func:`trainer_class` returns ``ERGRPOTrainer``, a ``trl.GRPOTrainer`` subclass that
``trainers.launch.build_trainer`` uses. What it changes, and why:

- **Data order on resume.** TRL's ``RepeatSampler`` draws each epoch's permutation from
  one generator seeded once, so a run resumed in epoch ``e > 0`` would replay epoch 0's
  order. The sampler here re-seeds and replays ``e`` permutations at the start of epoch
  ``e`` (the same order an uninterrupted run draws), so HF's batch skipping lands on
  the same problems.
- **Checkpoints.** HF writes the checkpoint (weights, optimizer, scheduler,
  ``rng_state[_<rank>].pth``, ``trainer_state.json`` with the log history); then every
  rank adds ``er_rank<r>.json`` (its per-rank record offset), and after a barrier the
  main process writes the manifest (:mod:`trainers.checkpoints`) with the rollout
  state (the count of generation batches drawn, which seeds the next sampling seed)
  and rotates by ``save_total_limit`` counting complete checkpoints only.
- **Grader errors.** A completion whose grader failed (``None`` from a reward function
  of :mod:`trainers.rewards`: tests crashed, checker failed) has its whole reward row
  set to NaN before advantages are computed. TRL 1.16 then leaves it out of its group's
  mean and std and gives it advantage 0 (TRL does that by itself only when *every*
  reward function returned ``None``; with an extra reward beside the grader, ``nansum``
  would have scored the failed grader as 0). Counted as ``er/reward_errors``.
- **Reward outages.** A reward function that still cannot reach its service after
  ``reward_retry_s`` reports an outage; the ranks agree (one gather) and then either
  all raise :class:`RewardServiceDown` (``on_reward_outage: fail``: ``er train`` writes a
  checkpoint of the last finished step and exits with :data:`EXIT_REWARD_OUTAGE`), or
  drop the groups that hold an unscored completion (``drop``: NaN rows, advantage 0,
  counted as ``er/dropped_groups``).
- **Per-budget baselines.** With ``advantage_baseline: budget`` the advantages TRL
  computed are replaced by :func:`trainers.advantages.budget_baseline_advantages` over the
  same rewards, grouped by the thinking budget of each row (what the rollout drew).
- **Preemption.** :class:`Preemption` turns SIGTERM into a flag; at the end of the
  current optimizer step the ranks agree on it, HF saves a checkpoint and stops, and
  ``er train`` exits with :data:`EXIT_PREEMPTED`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from trainers.config import ERTrainConfig

__all__ = ["EXIT_PREEMPTED", "EXIT_REWARD_OUTAGE", "STOP_FILE", "Preemption", "ResilienceCallback",
           "RewardServiceDown", "TrainingStopped", "checkpoint_after_failure", "read_stop", "record_stop",
           "restore_run_state", "trainer_class"]

#: exit status after SIGTERM with a checkpoint written (128 + SIGTERM, what shells and schedulers report)
EXIT_PREEMPTED = 128 + int(signal.SIGTERM)
#: exit status when the reward service stayed unreachable (sysexits EX_TEMPFAIL: try again later)
EXIT_REWARD_OUTAGE = 75


class RewardServiceDown(RuntimeError):
    """The reward service stayed unreachable past ``reward_retry_s`` (``on_reward_outage: fail``)."""


class Preemption:
    """SIGTERM (Slurm, Kubernetes, spot instances) -> a flag the training loop reads at step ends.

    Installed once per process; a second SIGTERM while the checkpoint is written is
    ignored (the flag is already set), so a scheduler's repeated signal does not cut the save.
    """

    def __init__(self) -> None:
        self.requested_at: float | None = None
        self._previous: Any = None

    def install(self) -> "Preemption":
        """Install the SIGTERM handler (main thread only; elsewhere a no-op)."""
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. a test calling train() from a thread)
            pass
        return self

    def uninstall(self) -> None:
        """Put back the SIGTERM handler that was there before :meth:`install`."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested_at is None:
            self.requested_at = time.monotonic()
            print(f"er train: SIGTERM received (pid {os.getpid()}): finishing the current step, then writing a "
                  "checkpoint and exiting", flush=True)

    @property
    def requested(self) -> bool:
        """Whether SIGTERM arrived."""
        return self.requested_at is not None


def _rng_snapshot() -> dict[str, Any]:
    import numpy as np
    import torch

    snap = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        snap["cuda"] = torch.cuda.random.get_rng_state_all()
    return snap


def _rng_restore(snap: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(snap["python"])
    np.random.set_state(snap["numpy"])
    torch.random.set_rng_state(snap["cpu"])
    if "cuda" in snap:
        torch.cuda.random.set_rng_state_all(snap["cuda"])


def _any_rank(trainer: Any, flag: bool) -> bool:
    """Whether ``flag`` is set on any rank (one small all-reduce; no collective on one process)."""
    acc = trainer.accelerator
    if acc.num_processes == 1:
        return flag
    import torch

    return bool(acc.reduce(torch.tensor([1.0 if flag else 0.0], device=acc.device), reduction="sum").item() > 0)


def _callback_base() -> Any:
    from transformers import TrainerCallback

    return TrainerCallback


class ResilienceCallback(_callback_base()):  # type: ignore[misc]
    """Snapshots the RNG at each step start (for a checkpoint written from a failed step) and stops on SIGTERM."""

    def __init__(self, preemption: Preemption) -> None:
        self.preemption = preemption
        self.trainer: Any = None
        self.rng_at_step_start: dict[str, Any] | None = None
        self.rollout_calls_at_step_start: int | None = None
        self.preempted_at_step: int | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Remember the RNG and the rollout count as this step finds them."""
        self.rng_at_step_start = _rng_snapshot()
        self.rollout_calls_at_step_start = getattr(getattr(self.trainer, "er_rollout", None), "calls", None)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """After SIGTERM on any rank: save and stop at the next generation-batch boundary (all ranks agree)."""
        per_generation = (getattr(args, "steps_per_generation", None) or args.gradient_accumulation_steps) * getattr(
            self.trainer, "num_iterations", 1)
        if (state.global_step * args.gradient_accumulation_steps) % per_generation:
            return  # mid generation batch: a resume from here would generate anew
        if _any_rank(self.trainer, self.preemption.requested):
            self.preempted_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True


def _epoch_sampler(base: Any) -> Any:
    """A TRL ``RepeatSampler`` whose permutation of epoch ``e`` does not depend on earlier epochs being iterated."""

    class EpochRepeatSampler(base):  # type: ignore[misc,valid-type]
        def set_epoch(self, epoch: int) -> None:
            if not self.shuffle or self.seed is None:
                return
            import torch

            self.generator.manual_seed(self.seed)
            for _ in range(epoch):  # the permutations an uninterrupted run drew in epochs 0..e-1
                torch.randperm(self.num_samples, generator=self.generator)

    return EpochRepeatSampler


def trainer_class() -> type:
    """``ERGRPOTrainer``: ``trl.GRPOTrainer`` with the changes listed in the module docstring."""
    import torch
    from accelerate.utils import gather
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    sampler_cls = _epoch_sampler(RepeatSampler)

    class ERGRPOTrainer(GRPOTrainer):  # type: ignore[misc,valid-type]
        er_config: ERTrainConfig | None = None
        er_rollout: Any = None  # the ElasticRolloutFunc (its ``calls`` count is saved)
        er_recorder: Any = None  # the per-rank recorder, when record_ranks

        def _get_train_sampler(self, dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(dataset)
            if type(sampler) is RepeatSampler:
                sampler.__class__ = sampler_cls
            self._er_sampler = sampler
            return sampler

        def _run_epoch(self, *args: Any, **kwargs: Any) -> Any:
            sampler = getattr(self, "_er_sampler", None)
            if hasattr(sampler, "set_epoch"):  # also reaches a sampler behind accelerate's batch skipping
                sampler.set_epoch(kwargs["epoch"])
            return super()._run_epoch(*args, **kwargs)

        def save_model(self, *args: Any, **kwargs: Any) -> None:
            from er_env.quiet import quiet_model_loading

            with quiet_model_loading():  # no "Writing model shards" bar per checkpoint and rank
                super().save_model(*args, **kwargs)

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            from trainers.checkpoints import rotate, write_manifest

            limit = self.args.save_total_limit
            self.args.save_total_limit = None  # HF would rotate before the manifest exists
            try:
                super()._save_checkpoint(model, trial)
            finally:
                self.args.save_total_limit = limit
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            rank = self.accelerator.process_index
            if self.er_recorder is not None:
                (folder / f"er_rank{rank}.json").write_text(json.dumps(
                    {"records_bytes": self.er_recorder.path.stat().st_size if self.er_recorder.path.exists() else 0}))
            self.accelerator.wait_for_everyone()
            if self.args.should_save and self.er_config is not None:
                state = {"rollout_calls": getattr(self.er_rollout, "calls", 0)}
                write_manifest(folder, step=self.state.global_step, world_size=self.accelerator.num_processes,
                               cfg=self.er_config, state=state)
                rotate(self.args.output_dir, limit, keep=folder)
            self.accelerator.wait_for_everyone()

        def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
            funcs = [f for f in self.reward_funcs if hasattr(f, "last_errors")]
            for f in funcs:
                f.reset_call()
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            n, device = len(prompts), rewards_per_func.device
            errors = torch.zeros(n, dtype=torch.bool, device=device)
            outage = torch.zeros(n, dtype=torch.bool, device=device)
            retries = 0
            for f in funcs:
                errors[list(f.last_errors)] = True
                outage[list(f.last_outage)] = True
                retries += f.last_retries
            errors, outage = (gather(x.float()) > 0 for x in (errors, outage))  # gloo gathers no bool
            mode = "train" if self.model.training else "eval"
            if outage.any():
                reasons = sorted({r for f in funcs for r in f.last_outage_reasons})
                if self.er_config is None or self.er_config.on_reward_outage == "fail":
                    raise RewardServiceDown(
                        f"the reward service {self._er_endpoint()} stayed unreachable for reward_retry_s="
                        f"{self._er_retry_s()} s ({int(outage.sum())} completions unscored"
                        + (f"; {reasons[0]}" if reasons else " on another rank") + ")")
                size = self.num_generations if mode == "train" else self.num_generations_eval
                groups = outage.view(-1, size).any(dim=1)
                outage = groups.repeat_interleave(size)
                self._metrics[mode]["er/dropped_groups"].append(float(groups.sum()))
            rewards_per_func[errors | outage] = torch.nan  # TRL: out of the group's mean/std, advantage 0
            self._metrics[mode]["er/reward_errors"].append(float((errors & ~outage).sum()))
            retried = torch.tensor([float(retries)], device=device)
            self._metrics[mode]["er/reward_retries"].append(float(gather(retried).sum()))
            self._er_rewards_per_func = rewards_per_func  # all processes' rows: per-budget baselines start here
            return rewards_per_func

        def _generate_and_score_completions(self, inputs: Any) -> Any:
            out = super()._generate_and_score_completions(inputs)
            if not self.model.training:
                return out
            if self.er_config is not None and self.er_config.advantage_baseline == "budget":
                out["advantages"] = self._er_budget_advantages(len(out["advantages"]), out["advantages"])
            if self.er_recorder is not None:  # the advantages this rank trains on
                self.er_recorder.write("advantages", step=self.state.global_step,
                                       advantages=out["advantages"].reshape(len(out["advantages"]), -1)[:, 0].tolist())
            return out

        def _er_budget_advantages(self, n_local: int, trl_advantages: Any) -> Any:
            """This process's advantages under per-budget baselines (:mod:`trainers.advantages`)."""
            from trainers.advantages import budget_baseline_advantages

            rewards_per_func = self._er_rewards_per_func
            rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
            rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
            rows = list(getattr(self.er_rollout, "last_row_budgets", []))
            if len(rows) != len(rewards):
                raise RuntimeError(f"per-budget baselines: the rollout recorded {len(rows)} row budgets for "
                                   f"{len(rewards)} rewards; advantage_baseline: budget needs er train's rollout.")
            adv = budget_baseline_advantages(rewards, rows, self.num_generations, str(self.scale_rewards))
            start = self.accelerator.process_index * n_local
            logged, values = self._logs["advantages"], adv.tolist()  # TRL's table: the advantages actually used
            for i in range(1, min(len(logged), len(values)) + 1):
                logged[-i] = values[-i]
            return adv[start:start + n_local].to(trl_advantages.device, trl_advantages.dtype)

        def _er_endpoint(self) -> str:
            return str(self.er_config.reward_endpoint) if self.er_config else "?"

        def _er_retry_s(self) -> float:
            return float(self.er_config.reward_retry_s) if self.er_config else 0.0

    return ERGRPOTrainer


class TrainingStopped(RuntimeError):
    """The run stopped early with a checkpoint; ``exit_status`` is what ``er train`` exits with.

    Attributes:
        exit_status: :data:`trainers.resilience.EXIT_PREEMPTED` or :data:`trainers.resilience.EXIT_REWARD_OUTAGE`.
        checkpoint: the checkpoint to resume from.
        trainer: the trainer (its state and log history up to the stop).

    """

    def __init__(self, message: str, exit_status: int, checkpoint: str | None, trainer: Any) -> None:
        super().__init__(message)
        self.exit_status, self.checkpoint, self.trainer = exit_status, checkpoint, trainer


#: written by rank 0 of a run that stopped on purpose (preempted, reward outage): read by the launching process
STOP_FILE = "er_stop.json"


def record_stop(output_dir: str, stop: TrainingStopped) -> None:
    """Rank 0 notes why the run stopped (the launching process maps it to ``er train``'s exit status)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / STOP_FILE).write_text(json.dumps({"exit_status": stop.exit_status, "message": str(stop),
                                                          "checkpoint": stop.checkpoint, "time": time.time()}))


def read_stop(output_dir: str, since: float) -> dict[str, Any] | None:
    """The stop note rank 0 wrote after ``since`` (a ``time.time()``), if any."""
    try:
        stop = json.loads((Path(output_dir) / STOP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return stop if float(stop.get("time", 0)) >= since else None


def restore_run_state(trainer: Any, ckpt: Any) -> None:
    """What HF does not restore: the rollout's call count (sampling seeds) and this rank's records."""
    trainer.er_rollout.calls = int(ckpt.manifest.get("state", {}).get("rollout_calls", 0))
    rec = trainer.er_recorder
    if rec is None:
        return
    rec.calls = trainer.er_rollout.calls
    offset_file = ckpt.path / f"er_rank{trainer.accelerator.process_index}.json"
    if offset_file.is_file() and rec.path.exists():
        offset = int(json.loads(offset_file.read_text())["records_bytes"])
        with open(rec.path, "r+b") as fh:  # records written after the checkpoint are replayed by the resumed run
            dropped = fh.read()[offset:].count(b"\n")
            fh.truncate(offset)
        rec.write("resume", step=ckpt.step, checkpoint=str(ckpt.path), dropped_records=dropped, pid=os.getpid())


def checkpoint_after_failure(trainer: Any) -> str:
    """A checkpoint of the last finished step, written while a step is abandoned (all ranks call this)."""
    from trainers.checkpoints import read_manifest

    folder = Path(trainer.args.output_dir) / f"checkpoint-{trainer.state.global_step}"
    if read_manifest(folder)[0] is not None:
        return str(folder)
    cb = trainer.er_resilience
    if cb.rng_at_step_start is not None:  # the RNG as the abandoned step found it
        _rng_restore(cb.rng_at_step_start)
    if cb.rollout_calls_at_step_start is not None:
        trainer.er_rollout.calls = cb.rollout_calls_at_step_start
    trainer._save_checkpoint(trainer.model, None)
    return str(folder)
