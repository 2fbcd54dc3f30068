"""Training checkpoints: what a runner saves, and how it resumes exactly.

A training checkpoint is a dict of tensors and plain values only (it loads with
``weights_only=True``)::

    format          "lavis-train/1"
    model           state dict of the unwrapped model
    optimizer       optimizer state dict
    lr_scheduler    schedule state (step counter and settings)
    scaler          GradScaler state, or None
    state           TrainState as a dict: epoch, epoch_done, data_epoch, data_batches, global_step, best_*
    rng             one RNG state per rank (see lavis.common.checkpoint.get_rng_state)
    meters          smoothed-loss state, so logs continue identically
    config          the resolved config of the run (plain dict)
    world_size, job_id, runner

Files in the output folder: ``checkpoint_{epoch}.pth`` after each (inner) epoch,
``checkpoint_latest.pth`` (the same, plus every ``run.save_every_iters`` steps) and
``checkpoint_best.pth`` (best ``agg_metrics`` on the validation splits).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lavis.common.checkpoint import atomic_save, load_state_dict_file, safe_torch_load, set_rng_state
from lavis.common.errors import CheckpointError
from lavis.common.io import fsync_dir

__all__ = [
    "FORMAT",
    "TrainState",
    "save_checkpoint",
    "load_training_checkpoint",
    "write_checkpoints",
    "restore_training",
    "load_model_weights",
    "link_or_copy",
    "remove_stale_temp_files",
]

FORMAT = "lavis-train/1"
log = logging.getLogger("lavis.runners")

# run keys whose change makes a resumed run differ from the run it continues
RESUME_SENSITIVE_KEYS = (
    "seed", "batch_size_train", "accum_grad_iters", "max_epoch", "max_iters", "iters_per_inner_epoch",
    "init_lr", "min_lr", "warmup_lr", "warmup_steps", "lr_sched", "lr_decay_rate", "weight_decay",
    "betas", "max_grad_norm", "amp", "train_splits",
)


@dataclass
class TrainState:
    """Where training stands; everything needed to continue exactly.

    ``epoch`` is the (inner) epoch in progress, ``epoch_done`` whether its training, validation and
    epoch-end checkpoint are complete. ``data_epoch`` / ``data_batches`` are the position in the
    training data (the sampler epoch and the micro-batches this rank consumed from it); they equal
    ``epoch`` and the batch count of the epoch runner, and run on their own in the iteration runner.
    ``global_step`` counts optimizer steps; ``best_metric`` / ``best_epoch`` track the best mean
    ``agg_metrics`` on the validation splits; ``replica_checks`` counts DDP replica checks.
    """

    epoch: int = 0
    epoch_done: bool = False
    data_epoch: int = 0
    data_batches: int = 0
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    replica_checks: int = 0
    last_valid: dict[str, Any] = field(default_factory=dict)  # metrics of the latest validation

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a checkpoint atomically (temporary file, fsync, rename). Call on rank 0 only."""
    atomic_save({"format": FORMAT, **payload}, path)


def write_checkpoints(
    payload: dict[str, Any], output_dir: Path, epoch: int, epoch_end: bool, improved: bool
) -> Path:
    """Write one checkpoint and point the others at it; returns the file written.

    At an epoch end: ``checkpoint_{epoch}.pth``, then ``checkpoint_latest.pth`` (and
    ``checkpoint_best.pth`` when ``improved``) as links to it. Otherwise only ``checkpoint_latest.pth``.
    """
    latest = output_dir / "checkpoint_latest.pth"
    if not epoch_end:
        save_checkpoint(payload, latest)
        return latest
    path = output_dir / f"checkpoint_{epoch}.pth"
    save_checkpoint(payload, path)
    if improved:
        link_or_copy(path, output_dir / "checkpoint_best.pth")
    link_or_copy(path, latest)
    return path


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Make ``dst`` hold the bytes of ``src``, atomically: hard link (or copy) to a temporary
    name, then rename over ``dst``. Later atomic writes of either path do not affect the other."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary files a killed run left next to its checkpoints; returns what was removed."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in folder.glob(".checkpoint_*.tmp"):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, checked for the keys resume needs."""
    ckpt = safe_torch_load(path)
    needed = ("model", "optimizer", "lr_scheduler", "state")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in needed):
        have = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not a training checkpoint of a lavis runner (needs keys {list(needed)}, has {have}). "
            "run.resume_ckpt_path continues a run from its checkpoint_latest.pth; to start training from "
            "weights only, point the model config's `finetuned` at the file and set load_finetuned: true."
        )
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {ckpt.get('format')!r}; this version reads {FORMAT!r}")
    return ckpt


def _plain(value: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    from lavis.common.logger import to_plain

    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return to_plain(value)


def restore_training(
    ckpt: dict[str, Any],
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    scaler: Any,
    loss_meter: Any,
    run_cfg: Any,
    rank: int,
    world_size: int,
) -> TrainState:
    """Load a training checkpoint into the live objects and return where training stands.

    With the same world size, every rank gets back its own random state and the exact data
    position, so training continues bit for bit. With another world size the data position is
    mapped approximately and a warning says so. Changed run keys that matter are warned about.
    """
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"run.resume_ckpt_path: the model in {path} does not fit this model: missing {sorted(missing)[:20]}, "
            f"unexpected {sorted(unexpected)[:20]}; resume with the model config of that run"
        )
    optimizer.load_state_dict(ckpt["optimizer"])
    lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if "loss" in (ckpt.get("meters") or {}):
        loss_meter.load_state_dict(ckpt["meters"]["loss"])
    state = TrainState.from_dict(ckpt["state"])
    saved_run = (ckpt.get("config") or {}).get("run", {})
    saved_world, rng = int(ckpt.get("world_size", 1)), ckpt.get("rng") or []
    if saved_world == world_size and len(rng) == world_size:
        set_rng_state(rng[rank])
    else:
        old_bs = int(saved_run.get("batch_size_train", run_cfg.batch_size_train))
        consumed = state.data_batches * old_bs * saved_world  # samples of the data epoch, all ranks
        accum = run_cfg.accum_grad_iters
        state.data_batches = consumed // (run_cfg.batch_size_train * world_size) // accum * accum
        from lavis.common.utils import seed_everything

        seed_everything(run_cfg.seed + rank + 1000 * state.global_step)
        log.warning(
            "resuming a run of %d rank(s) on %d: the position in the data and the random streams are mapped "
            "approximately, so the result will not match an uninterrupted run exactly", saved_world, world_size,
        )
    changed = [k for k in RESUME_SENSITIVE_KEYS if k in saved_run and _plain(saved_run[k]) != _plain(run_cfg[k])]
    if changed:
        log.warning(
            "resuming with changed run keys %s (checkpoint: %s; now: %s): the run will not match an uninterrupted one",
            changed, {k: saved_run[k] for k in changed}, {k: _plain(run_cfg[k]) for k in changed},
        )
    return state


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> dict[str, Any] | None:
    """Load weights into ``model`` strictly, from a training checkpoint or a plain state dict
    (``.pth``/``.bin``/``.safetensors``). Returns the training state stored with them (see
    :class:`TrainState`) when the file is a training checkpoint, else ``None``."""
    path = Path(path)
    state = None
    if path.suffix == ".safetensors":
        weights = load_state_dict_file(path)
    else:
        obj = safe_torch_load(path)
        if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
            weights, state = obj["model"], obj.get("state")
        else:
            weights = obj
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise CheckpointError(f"{path} does not hold a state dict (name -> tensor)")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"weights in {path} do not fit {type(model).__name__}: missing keys {sorted(missing)[:20]}; "
            f"unexpected keys {sorted(unexpected)[:20]}. Was it written for another model config?"
        )
    return state if isinstance(state, dict) else None
