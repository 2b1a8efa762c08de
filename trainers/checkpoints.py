"""Checkpoints of an ``er train`` run: complete-or-absent, found by ``--resume latest``, checked against the recipe.

HF's ``Trainer`` writes a checkpoint into ``<output_dir>/checkpoint-<step>/`` file by file
(weights, optimizer, scheduler, ``rng_state[_<rank>].pth``, ``trainer_state.json``) and
loads it with ``trainer.train(resume_from_checkpoint=...)``. A process killed half-way
through that write leaves a folder HF's own ``get_last_checkpoint`` would pick and then
fail to load. This module adds what is missing:

- a **manifest** (:data:`MANIFEST`, ``er_checkpoint.json``) written last, after every
  rank has finished its files (a barrier), by an atomic rename: it lists each file
  with its size, the step, the world size, the recipe's :func:`resume_fingerprint`
  and the rollout state (how many generation batches were drawn, which seeds the
  next sampling seed). A checkpoint is complete if and only if its manifest is there
  and every listed file has the listed size;
- :func:`resolve_resume`: ``latest`` is the newest complete checkpoint (incomplete ones
  are named and skipped); an explicit path must be complete;
- :func:`check_resumable`: the checkpoint's recipe and world size against this run's,
  before anything is loaded (each difference named with both values);
- :func:`rotate`: ``save_total_limit`` applied only after the new checkpoint is
  complete, counting complete checkpoints only (HF's own rotation runs before the
  manifest would exist and could delete the last loadable checkpoint with a limit of 1).

Stdlib only: resolving and checking a checkpoint imports no torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers.config import ConfigError, ERTrainConfig

__all__ = ["CHANGEABLE_FIELDS", "CHANGEABLE_GRPO_KEYS", "MANIFEST", "Checkpoint", "check_resumable",
           "check_resume", "checkpoint_dirs", "complete_checkpoints", "read_manifest", "resolve_resume",
           "resume_fingerprint", "rotate", "write_manifest"]

#: the file whose presence (with matching file sizes) makes a checkpoint complete
MANIFEST = "er_checkpoint.json"
FORMAT = 1
_DIR_RE = re.compile(r"^checkpoint-(\d+)$")

#: config fields a resumed run may change (where it runs and what it logs, not what it computes)
CHANGEABLE_FIELDS = ("output_dir", "reward_endpoint", "reward_concurrency", "reward_retry_s", "on_reward_outage",
                     "record_ranks", "main_process_ip", "main_process_port", "machine_rank", "num_machines",
                     "rendezvous_timeout_s", "accelerate_config")
#: ``grpo`` settings a resumed run may change (max_steps: train further; the rest: saving and logging)
CHANGEABLE_GRPO_KEYS = ("max_steps", "num_train_epochs", "save_steps", "save_total_limit", "save_strategy",
                        "logging_steps", "logging_first_step", "report_to", "disable_tqdm", "run_name", "logging_dir",
                        "log_completions", "dataloader_num_workers")


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint: its folder and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def step(self) -> int:
        """The optimizer step it was written after."""
        return int(self.manifest["step"])


def resume_fingerprint(cfg: ERTrainConfig) -> dict[str, Any]:
    """The settings a checkpoint must share with the run that resumes it (JSON-normalised)."""
    import dataclasses

    out: dict[str, Any] = {}
    for f in dataclasses.fields(ERTrainConfig):
        if f.init and f.name not in CHANGEABLE_FIELDS:
            out[f.name] = getattr(cfg, f.name)
    out["grpo"] = {k: v for k, v in cfg.grpo.items() if k not in CHANGEABLE_GRPO_KEYS}
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Every ``checkpoint-<step>`` folder under ``output_dir``, oldest step first (complete or not)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _DIR_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def read_manifest(path: str | Path) -> tuple[dict[str, Any] | None, str]:
    """A checkpoint folder's manifest when the checkpoint is complete, else ``(None, why not)``."""
    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"no {MANIFEST} (the save did not finish)"
    except (OSError, ValueError) as exc:
        return None, f"unreadable {MANIFEST} ({exc})"
    for name, size in dict(manifest.get("files", {})).items():
        file = folder / name
        if not file.is_file():
            return None, f"{name} is missing"
        if file.stat().st_size != size:
            return None, f"{name} has {file.stat().st_size} bytes, the manifest says {size}"
    return manifest, ""


def complete_checkpoints(output_dir: str | Path) -> tuple[list[Checkpoint], dict[Path, str]]:
    """``(complete checkpoints oldest first, {incomplete folder: why})``."""
    done, broken = [], {}
    for folder in checkpoint_dirs(output_dir):
        manifest, why = read_manifest(folder)
        if manifest is None:
            broken[folder] = why
        else:
            done.append(Checkpoint(folder, manifest))
    return done, broken


def resolve_resume(resume: str, output_dir: str | Path) -> Checkpoint:
    """The checkpoint ``--resume`` names: ``latest`` (newest complete one in ``output_dir``) or a folder.

    Raises:
        ConfigError: no complete checkpoint, or the folder is incomplete (naming why).

    """
    if resume == "latest":
        done, broken = complete_checkpoints(output_dir)
        skipped = "; ".join(f"{p.name}: {why}" for p, why in broken.items())
        if not done:
            raise ConfigError(f"--resume latest: no complete checkpoint in {str(output_dir)!r}"
                              + (f" (incomplete: {skipped})" if skipped else "")
                              + "; set grpo.save_steps (with save_strategy: steps) so the run writes checkpoints, "
                              "or start without --resume.")
        return done[-1]
    folder = Path(resume)
    if not folder.is_dir():
        raise ConfigError(f"--resume {resume!r}: no such checkpoint folder (give a checkpoint-<step> folder or "
                          "'latest').")
    manifest, why = read_manifest(folder)
    if manifest is None:
        raise ConfigError(f"--resume {resume!r} is not a complete checkpoint: {why}; resume from an earlier one "
                          f"(--resume latest picks the newest complete one).")
    return Checkpoint(folder, manifest)


def check_resumable(ckpt: Checkpoint, cfg: ERTrainConfig) -> list[str]:
    """Compare a checkpoint's recipe with this run's, before anything is loaded.

    Returns:
        Notes on allowed changes (e.g. a new ``max_steps``) to print.

    Raises:
        ConfigError: a different world size or recipe, naming each field with both values.

    """
    saved_world = int(ckpt.manifest.get("world_size", 1))
    if saved_world != cfg.num_processes:
        raise ConfigError(f"--resume {str(ckpt.path)!r}: the checkpoint was written by num_processes={saved_world}, "
                          f"this run has num_processes={cfg.num_processes}. Exact resume needs the same world size "
                          "(each rank's RNG state and data shard are in the checkpoint); resume with --num-processes "
                          f"{saved_world}, or start a new run from its weights with --model {ckpt.path}.")
    theirs, mine = ckpt.manifest.get("recipe", {}), resume_fingerprint(cfg)
    diffs = []
    for key in sorted(set(theirs) | set(mine)):
        if key == "grpo":
            a, b = theirs.get("grpo", {}), mine.get("grpo", {})
            diffs += [f"grpo.{k}: checkpoint {a.get(k)!r}, this run {b.get(k)!r}" for k in sorted(set(a) | set(b))
                      if a.get(k) != b.get(k)]
        elif theirs.get(key) != mine.get(key):
            diffs.append(f"{key}: checkpoint {theirs.get(key)!r}, this run {mine.get(key)!r}")
    if diffs:
        raise ConfigError(f"--resume {str(ckpt.path)!r} is a checkpoint of another recipe (nothing was loaded): "
                          + "; ".join(diffs) + ". Resume with the recipe and overrides it was trained with (only "
                          f"{', '.join(CHANGEABLE_FIELDS)} and grpo.{{{', '.join(CHANGEABLE_GRPO_KEYS)}}} may "
                          "change).")
    notes = []
    old_max = ckpt.manifest.get("max_steps")
    new_max = cfg.grpo.get("max_steps")
    if old_max is not None and new_max is not None and old_max != new_max:
        notes.append(f"max_steps changed from {old_max} to {new_max}: the learning-rate schedule continues from the "
                     "checkpoint's scheduler state under the new horizon")
    return notes


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(folder: str | Path, *, step: int, world_size: int, cfg: ERTrainConfig,
                   state: dict[str, Any]) -> Path:
    """Make a checkpoint complete: fsync its files, then write the manifest by an atomic rename.

    Call on the main process only, after every rank has written its files.

    Args:
        folder: the checkpoint folder.
        step: the optimizer step it holds.
        world_size: processes of the run.
        cfg: the run's config (its :func:`resume_fingerprint` is stored).
        state: the run's own resumable state (rollout calls...).

    Returns:
        The manifest's path.

    """
    root = Path(folder)
    files = {}
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        _fsync(file)
        files[str(file.relative_to(root))] = file.stat().st_size
    manifest = {"format": FORMAT, "step": step, "world_size": world_size, "max_steps": cfg.grpo.get("max_steps"),
                "recipe": resume_fingerprint(cfg), "state": state, "files": files}
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    _fsync(tmp)
    os.replace(tmp, root / MANIFEST)
    _fsync(root)
    return root / MANIFEST


def rotate(output_dir: str | Path, save_total_limit: int | None, keep: Path | None = None) -> list[Path]:
    """Delete old checkpoints: keep the newest ``save_total_limit`` complete ones (and ``keep``).

    Incomplete folders older than the newest complete checkpoint are left-overs of a
    killed save and are deleted too; newer incomplete ones may still be being written.

    Returns:
        The folders deleted.

    """
    done, broken = complete_checkpoints(output_dir)
    if not done:
        return []
    doomed = [c.path for c in done[:-save_total_limit]] if save_total_limit else []
    newest = done[-1].step
    doomed += [p for p in broken if int(p.name.split("-")[1]) < newest]
    doomed = [p for p in doomed if keep is None or p.resolve() != Path(keep).resolve()]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def check_resume(cfg: ERTrainConfig, resume: str) -> Any:
    """The checkpoint ``--resume`` names, checked against ``cfg`` (nothing is loaded).

    Returns:
        The :class:`trainers.checkpoints.Checkpoint`.

    Raises:
        ConfigError: no complete checkpoint, or one of another recipe or world size.

    """
    ckpt = resolve_resume(resume, cfg.output_dir)
    for note in check_resumable(ckpt, cfg):
        print(f"er train: {note}", flush=True)
    return ckpt
