"""LAVIS 1.0 experiment configs load with one notice per LAVIS spelling, resolve to the same run
settings as lavis's own project config, and LAVIS's per-epoch LR schedules are reproduced."""

import dataclasses
import logging
import math
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from lavis.common.config import Config
from lavis.common.errors import ConfigError
from lavis.common.lavis_compat import translate
from lavis.common.registry import registry

ROOT = Path(__file__).resolve().parents[3]
LAVIS_CFG = ROOT / "tests" / "assets" / "lavis_configs" / "caption_coco_ft.yaml"
PROJECT_CFG = ROOT / "projects" / "blip" / "caption_coco_ft.yaml"


def test_a_lavis_config_resolves_to_the_lavis_project_config(caplog):
    with caplog.at_level(logging.WARNING, logger="lavis.config"):
        theirs = Config.from_file(LAVIS_CFG)
    ours = Config.from_file(PROJECT_CFG)
    theirs_run, ours_run = dataclasses.asdict(theirs.run), dataclasses.asdict(ours.run)
    # precision is the one difference: LAVIS's `amp: False` is fp32 ("none"); the project config
    # leaves it to lavis's default, bf16 autocast where the hardware supports it
    assert (theirs_run.pop("amp"), ours_run.pop("amp")) == ("none", "auto")
    assert theirs_run == ours_run  # every other run setting, defaults included
    assert theirs.run.warmup_lr == -1.0  # LAVIS's default: no warm-up below init_lr
    assert theirs.model == ours.model
    assert OmegaConf.to_container(theirs.datasets) == OmegaConf.to_container(ours.datasets)
    notices = [r.getMessage() for r in caplog.records if r.name == "lavis.config"]
    for spelling in ("run.amp: none", "leave them out", "run.lr_sched: lavis_cosine_lr",
                     "datasets: {coco: {type: default}}"):
        assert sum(spelling in n for n in notices) == 1, (spelling, notices)
    assert len(notices) == 4 and all(n.startswith("LAVIS config: ") for n in notices)


def test_each_lavis_spelling_is_translated():
    cfg = OmegaConf.create({
        "run": {"task": "captioning", "runner": "runner_base", "amp": True, "world_size": 8,
                "lr_sched": "linear_warmup_step_lr"},
        "datasets": {"coco_vqa": {"data_type": "images"}, "msrvtt_qa": {}, "nlvr": {}},
    })
    out, notices = translate(cfg)
    assert out.run.runner == "runner_epoch" and out.run.amp == "fp16" and "world_size" not in out.run
    assert out.run.lr_sched == "lavis_step_lr"
    assert dict(out.datasets) == {"vqav2": {"type": "default"}, "msrvtt": {"type": "qa"}, "nlvr2": {"type": "default"}}
    assert len(notices) == 8 and cfg.run.runner == "runner_base"  # the input is not changed


def test_a_lavis_native_config_is_left_alone():
    cfg = OmegaConf.create({"run": {"task": "captioning", "lr_sched": "linear_warmup_cosine_lr", "amp": "none"},
                            "datasets": {"coco": {}}})
    out, notices = translate(cfg)
    assert notices == [] and out.run.lr_sched == "linear_warmup_cosine_lr"


def test_anything_else_unknown_stays_an_error(tmp_path):
    cfg = yaml.safe_load(LAVIS_CFG.read_text())
    cfg["run"]["k_tset"] = 256
    cfg["model"]["vit_grad_ckpt"] = True
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as info:
        Config.from_file(path)
    assert {p.split(":")[0] for p in info.value.problems} == {"run.k_tset", "model.vit_grad_ckpt"}


def lavis_reference(epoch: int, step: int, *, sched: str, init=1e-4, min_lr=1e-6, warm_start=1e-6, warm_steps=3,
                    max_epoch=4, decay=0.5) -> float:
    """LAVIS 1.0.2's rule, written out from its formulas."""
    if epoch == 0:
        return min(init, warm_start + (init - warm_start) * step / max(warm_steps, 1))
    if sched == "cosine":
        return (init - min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / max_epoch)) + min_lr
    return max(min_lr, init * decay**epoch)


@pytest.mark.parametrize("name, sched", [("lavis_cosine_lr", "cosine"), ("lavis_step_lr", "step")])
def test_lavis_schedules_follow_lavis_per_epoch_rule(name, sched):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    per_epoch = 5
    s = registry.get_lr_scheduler_class(name)(opt, init_lr=1e-4, min_lr=1e-6, warmup_lr=1e-6, warmup_steps=3,
                                              total_steps=4 * per_epoch, steps_per_epoch=per_epoch, decay_rate=0.5)
    for step in range(4 * per_epoch):
        epoch, i = divmod(step, per_epoch)
        assert s.lr_at(step) == pytest.approx(lavis_reference(epoch, i, sched=sched), rel=1e-12), step
    # one rate for a whole epoch after the first, and warm-up only in the first
    assert len({s.lr_at(step) for step in range(per_epoch, 2 * per_epoch)}) == 1
    assert s.lr_at(3) == s.lr_at(4) == pytest.approx(1e-4)


def test_lavis_default_warmup_lr_minus_one_means_no_warmup():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = registry.get_lr_scheduler_class("lavis_cosine_lr")(opt, init_lr=1e-4, warmup_lr=-1, warmup_steps=0,
                                                            total_steps=10, steps_per_epoch=5)
    assert [s.lr_at(i) for i in range(5)] == [pytest.approx(1e-4)] * 5
