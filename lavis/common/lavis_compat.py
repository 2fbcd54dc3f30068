"""Experiment configs written for LAVIS 1.0 load here too.

A LAVIS user brings their YAML files. :func:`translate` rewrites LAVIS's spellings into lavis's,
logging one line per rewrite that names the lavis spelling, before the config is merged and
validated. Anything it does not know stays as it is, so an unknown key is still an error.

What it rewrites:

- ``run.runner: runner_base`` -> ``runner_epoch``;
- a boolean ``run.amp`` -> ``fp16`` (LAVIS's ``amp: true`` is fp16 autocast with a GradScaler) or
  ``none``;
- ``run.world_size``, ``run.dist_url``, ``run.distributed`` are dropped: torchrun sets them;
- ``run.lr_sched: linear_warmup_cosine_lr`` / ``linear_warmup_step_lr`` in a LAVIS-structured
  config -> ``lavis_cosine_lr`` / ``lavis_step_lr``, LAVIS's per-epoch schedules (warm-up during
  the first epoch only, then one learning rate per epoch), because lavis's schedules of those
  names step every optimizer step; an unset ``warmup_lr`` becomes LAVIS's default -1 (start at
  ``init_lr``);
- LAVIS's builder names (``coco_caption``, ``coco_vqa``, ``nlvr``, ...) -> lavis's builder and
  type; ``data_type`` (read by nothing here) is dropped.

A config counts as LAVIS-structured when its ``run`` section has one of LAVIS's distribution
keys, ``runner: runner_base`` or a boolean ``amp``, or a data set uses a LAVIS builder name.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("lavis.config")

#: LAVIS builder name -> (lavis builder, type)
LAVIS_DATASETS: dict[str, tuple[str, str]] = {
    "coco_caption": ("coco", "default"),
    "coco_retrieval": ("coco", "retrieval"),
    "coco_vqa": ("vqav2", "default"),
    "ok_vqa": ("okvqa", "default"),
    "aok_vqa": ("aokvqa", "default"),
    "nlvr": ("nlvr2", "default"),
    "msrvtt_retrieval": ("msrvtt", "default"),
    "msrvtt_caption": ("msrvtt", "caption"),
    "msrvtt_qa": ("msrvtt", "qa"),
    "msvd_caption": ("msvd", "default"),
    "msvd_qa": ("msvd", "qa"),
    "didemo_retrieval": ("didemo", "default"),
}
#: LAVIS's per-epoch schedules -> the lavis schedules that reproduce them
LAVIS_SCHEDULES = {"linear_warmup_cosine_lr": "lavis_cosine_lr", "linear_warmup_step_lr": "lavis_step_lr"}
DIST_KEYS = ("world_size", "dist_url", "distributed")


def is_lavis_structured(cfg: DictConfig) -> bool:
    """Whether ``cfg`` carries a spelling only LAVIS's configs use (see the module docstring)."""
    run = cfg.get("run")
    if isinstance(run, DictConfig):
        if any(k in run for k in DIST_KEYS) or run.get("runner") == "runner_base":
            return True
        if isinstance(run.get("amp"), bool):
            return True
    datasets = cfg.get("datasets")
    return isinstance(datasets, DictConfig) and any(name in LAVIS_DATASETS for name in datasets)


def translate(cfg: DictConfig) -> tuple[DictConfig, list[str]]:
    """``cfg`` with LAVIS's spellings rewritten, and one notice per rewrite (also logged).

    A config without LAVIS spellings comes back unchanged, with no notice.
    """
    if not is_lavis_structured(cfg):
        return cfg, []
    cfg = cfg.copy()
    notices: list[str] = []

    def note(message: str) -> None:
        notices.append(message)
        log.warning("LAVIS config: %s", message)

    run = cfg.get("run")
    if isinstance(run, DictConfig):
        if run.get("runner") == "runner_base":
            run.runner = "runner_epoch"
            note("run.runner: runner_base is read as runner_epoch (lavis spelling: run.runner: runner_epoch)")
        amp = run.get("amp")
        if isinstance(amp, bool):
            run.amp = "fp16" if amp else "none"
            note(f"run.amp: {str(amp).lower()} is read as {run.amp!r} (lavis spelling: run.amp: {run.amp}; "
                 "'auto' uses bf16 where the device supports it)")
        dropped = [k for k in DIST_KEYS if k in run]
        for key in dropped:
            del run[key]
        if dropped:
            note(f"run.{', run.'.join(dropped)}: ignored; torchrun sets the processes and run.dist_backend the "
                 "backend (lavis spelling: leave them out)")
        sched = run.get("lr_sched")
        if sched in LAVIS_SCHEDULES:
            run.lr_sched = LAVIS_SCHEDULES[sched]
            note(f"run.lr_sched: {sched} follows LAVIS's per-epoch schedule here (lavis spelling: "
                 f"run.lr_sched: {run.lr_sched}; lavis's {sched} steps every optimizer step)")
            if "warmup_lr" not in run:  # LAVIS's default -1: the first epoch starts at init_lr
                run.warmup_lr = -1.0
    datasets = cfg.get("datasets")
    if isinstance(datasets, DictConfig):
        renamed: dict[str, Any] = {}
        for name in [str(k) for k in datasets.keys()]:
            block = datasets[name]
            if isinstance(block, DictConfig) and "data_type" in block:
                del block["data_type"]
                note(f"datasets.{name}.data_type: ignored (lavis spelling: leave it out)")
            if name in LAVIS_DATASETS:
                ours, dtype = LAVIS_DATASETS[name]
                block = block if isinstance(block, DictConfig) else OmegaConf.create({})
                if "type" not in block or block.type == "default":
                    block.type = dtype
                renamed[name] = (ours, block)
                note(f"datasets.{name} is lavis's {ours} builder, type {block.type} (lavis spelling: "
                     f"datasets: {{{ours}: {{type: {block.type}}}}})")
        for old, (ours, block) in renamed.items():
            del datasets[old]
            datasets[ours] = block
    return cfg, notices


__all__ = ["translate", "is_lavis_structured", "LAVIS_DATASETS", "LAVIS_SCHEDULES"]
