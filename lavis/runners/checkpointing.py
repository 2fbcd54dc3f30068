"""Training checkpoints: what a runner saves, and how it resumes exactly.

A training checkpoint is a dict of tensors and plain values only (it loads with
``weights_only=True``)::

    format          "lavis-train/1"
    model           state dict of the unwrapped model, or only its trained entries (``run.save_weights``)
    model_record    what a trained-only ``model`` holds and the base it needs (see
                    :mod:`lavis.models.trained_only`), or None for a whole state dict
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

from lavis.common.checkpoint import (
    RecordedStateDict, atomic_save, load_state_dict_file, safe_torch_load, set_rng_state, unwrap_state_dict,
)
from lavis.common.errors import CheckpointError
from lavis.common.io import fsync_dir
from lavis.common.run_schema import resume_sensitive_keys
from lavis.models import trained_only
from lavis.models.trained_only import FrozenWatch

__all__ = [
    "FORMAT",
    "FrozenWatch",
    "TrainState",
    "save_checkpoint",
    "load_training_checkpoint",
    "write_checkpoints",
    "restore_training",
    "load_model_weights",
    "model_entries",
    "link_or_copy",
    "remove_stale_temp_files",
]

FORMAT = "lavis-train/1"
log = logging.getLogger("lavis.runners")



@dataclass
class TrainState:
    """Where training stands; everything needed to continue exactly.

    ``epoch`` is the (inner) epoch in progress, ``epoch_done`` whether its training, validation and
    epoch-end checkpoint are complete. ``data_epoch`` / ``data_batches`` are the position in the
    training data (the sampler epoch and the micro-batches this rank consumed from it); they equal
    ``epoch`` and the batch count of the epoch runner, and run on their own in the iteration runner.
    ``global_step`` counts optimizer steps that updated the weights (``skipped_steps`` the ones skipped
for non-finite values); ``best_metric`` / ``best_epoch`` track the best mean
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
    skipped_steps: int = 0  # optimizer steps skipped for a non-finite loss or gradient (run.skip_nonfinite_steps)
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


def adopt_best_checkpoint(resumed: str | os.PathLike, output_dir: Path, best_epoch: int | None) -> None:
    """Resuming into another ``output_dir``: bring the old run's ``checkpoint_best.pth`` along (when
    its best epoch came before the resume), so that the test splits are scored on it at the end.
    Call on rank 0 only."""
    old, new = Path(resumed).parent / "checkpoint_best.pth", output_dir / "checkpoint_best.pth"
    if best_epoch is not None and not new.exists() and old.exists() and old.resolve() != new.resolve():
        link_or_copy(old, new)
        log.info("resumed into %s: took the best checkpoint so far (epoch %d) from %s", output_dir, best_epoch, old)


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


def changed_run_settings(saved_run: dict[str, Any], run_cfg: Any) -> dict[str, tuple[Any, Any]]:
    """``{key: (checkpoint value, new value)}`` for every run key both configs have whose value
    differs (``resume_ckpt_path`` aside: it always does)."""
    now = dataclasses.asdict(run_cfg)
    return {k: (_plain(saved_run[k]), _plain(v)) for k, v in now.items()
            if k in saved_run and k != "resume_ckpt_path" and _plain(saved_run[k]) != _plain(v)}


def _load_weights(model: torch.nn.Module, weights: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(missing, unexpected)`` keys of loading a full state dict, into an FSDP-sharded model too."""
    from lavis.runners import fsdp

    if fsdp.is_sharded(model):
        return fsdp.load_full_model(model, weights)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    return list(missing), list(unexpected)


def model_entries(model: torch.nn.Module, state: dict[str, Any], cfg: Any, watch: FrozenWatch) -> dict[str, Any]:
    """The ``model`` and ``model_record`` entries of a checkpoint from the model's full ``state``:
    all of it, or its trained entries only (as ``cfg.run.save_weights`` says; ``watch`` was made
    when training started; see :func:`lavis.models.trained_only.select`). Collective."""
    mode = cfg.run.save_weights
    changed = watch.changed() if mode != "all" else ()
    weights, record = trained_only.select(model, state, cfg.to_dict()["model"], mode, changed)
    return {"model": weights, "model_record": record}


def _load_checked(model: torch.nn.Module, weights: dict[str, Any], record: dict[str, Any] | None, where: str,
                  hint: str) -> None:
    """Load whole or trained-only ``weights`` (into an FSDP-sharded model too); any key that does
    not fit, or a base that differs from a trained-only checkpoint's, is a :class:`CheckpointError`."""
    if record is not None:
        trained_only.load(model, RecordedStateDict(weights, record), where, load_state=_load_weights)
        return
    missing, unexpected = _load_weights(model, weights)
    if missing or unexpected:
        raise CheckpointError(f"the model in {where} does not fit this model: missing keys {sorted(missing)[:20]}, "
                              f"unexpected keys {sorted(unexpected)[:20]}; {hint}")


def _keep_new_hyperparameters(optimizer: torch.optim.Optimizer, saved: dict[str, Any], model: torch.nn.Module) -> None:
    """Load the optimizer's state (moments, step counts) but keep the group settings the new
    config gave it (weight decay, betas, ...): ``Optimizer.load_state_dict`` would restore the old."""
    settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    if len(saved.get("param_groups", [])) != len(settings):
        raise CheckpointError(
            f"run.resume_ckpt_path: the checkpoint's optimizer has {len(saved.get('param_groups', []))} parameter "
            f"groups, this model has {len(settings)}; resume with the model config of that run"
        )
    from lavis.runners import fsdp

    if fsdp.is_sharded(model):
        fsdp.load_full_optimizer(model, optimizer)(saved)
    else:
        optimizer.load_state_dict(saved)
    for group, kept in zip(optimizer.param_groups, settings):
        group.update(kept)


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

    What must stay for exactness comes from the checkpoint: weights, optimizer moments, gradient
    scaler, RNG states, data position and step counters. Settings come from the config: the
    optimizer keeps the hyperparameters it was built with and the LR schedule, built from the new
    ``run`` keys, continues at the checkpoint's global step. Every run key that differs from the
    checkpoint's config is logged as ``old -> new (using new)``.

    With the same world size and batch size every rank gets back its own random state and the
    exact data position, so training continues bit for bit. Otherwise the data position is mapped
    to the nearest micro-batch and a warning says so.
    """
    _load_checked(model, ckpt["model"], ckpt.get("model_record"), f"run.resume_ckpt_path: {path}",
                  "resume with the model config of that run")
    _keep_new_hyperparameters(optimizer, ckpt["optimizer"], model)
    lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if "loss" in (ckpt.get("meters") or {}):
        loss_meter.load_state_dict(ckpt["meters"]["loss"])
    state = TrainState.from_dict(ckpt["state"])
    saved_run = (ckpt.get("config") or {}).get("run", {})
    changed = changed_run_settings(saved_run, run_cfg)
    saved_world, rng = int(ckpt.get("world_size", 1)), ckpt.get("rng") or []
    old_bs = int(saved_run.get("batch_size_train", run_cfg.batch_size_train))
    if saved_world == world_size and len(rng) == world_size and old_bs == run_cfg.batch_size_train:
        set_rng_state(rng[rank])
    else:
        consumed = state.data_batches * old_bs * saved_world  # samples of the data epoch, all ranks
        accum = run_cfg.accum_grad_iters
        state.data_batches = consumed // (run_cfg.batch_size_train * world_size) // accum * accum
        from lavis.common.utils import seed_everything

        seed_everything(run_cfg.seed + rank + 1000 * state.global_step)
        log.warning(
            "resuming a run of %d rank(s) x batch %d on %d rank(s) x batch %d: the position in data epoch %d "
            "(%d samples consumed) is mapped to micro-batch %d, so up to a batch of samples is skipped or seen "
            "twice, and the random streams start afresh", saved_world, old_bs, world_size,
            run_cfg.batch_size_train, state.data_epoch, consumed, state.data_batches,
        )
    if changed:
        lines = "".join(f"\n  run.{k}: {old!r} -> {new!r} (using new)" for k, (old, new) in changed.items())
        sensitive = [k for k in changed if k in resume_sensitive_keys(type(run_cfg))]
        tail = ""
        if sensitive:
            tail = (f"\nthe LR schedule is rebuilt from the new settings at global step {state.global_step}; "
                    f"because {', '.join(sensitive)} changed, the run will not match an uninterrupted one")
        if {"seed", "train_splits"} & set(changed) and not state.epoch_done:
            tail += (f"\nrun.seed / run.train_splits changed inside data epoch {state.data_epoch}: its remaining "
                     f"micro-batches (from {state.data_batches}) come from the new data order, so some samples "
                     "of this epoch are seen twice and some not at all")
        log.warning("resuming from %s with run settings that differ from the checkpoint's:%s%s", path, lines, tail)
    return state


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> dict[str, Any] | None:
    """Load weights into ``model`` strictly, from a training checkpoint or a plain state dict
    (``.pth``/``.bin``/``.safetensors``). Returns the training state stored with them (see
    :class:`TrainState`) when the file is a training checkpoint, else ``None``."""
    path = Path(path)
    state, record = None, None
    if path.suffix == ".safetensors":
        weights = load_state_dict_file(path)
    else:
        obj = safe_torch_load(path)
        weights, record = unwrap_state_dict(obj, path)
        if weights is not obj:  # a training checkpoint: its training state comes with it
            state = obj.get("state")
    _load_checked(model, weights, record, str(path), "was it written for another model config?")
    return state if isinstance(state, dict) else None
