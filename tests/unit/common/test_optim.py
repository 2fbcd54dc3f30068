"""LR schedules (values at known steps, state round trip) and AdamW parameter groups."""


import pytest
import torch
from torch import nn

from lavis.common.checkpoint import atomic_save, safe_torch_load
from lavis.common.errors import ConfigError
from lavis.common.optim import (
    ConstantLR,
    LinearWarmupCosineLR,
    LinearWarmupStepLR,
    build_lr_scheduler,
    build_optimizer,
    param_groups,
)
from lavis.common.registry import registry
from lavis.common.run_schema import RunConfig


def opt(n_groups: int = 1) -> torch.optim.Optimizer:
    groups = [{"params": [nn.Parameter(torch.zeros(2))], "lr_scale": 1.0 + i} for i in range(n_groups)]
    return torch.optim.AdamW(groups, lr=1.0)


def run_cfg(**kw) -> RunConfig:
    return RunConfig(task="x", **kw)


def test_warmup_is_linear_from_warmup_lr_to_init_lr():
    s = LinearWarmupCosineLR(opt(), init_lr=1e-3, warmup_lr=1e-5, warmup_steps=10, total_steps=110, steps_per_epoch=11)
    assert s.lr_at(0) == pytest.approx(1e-5)
    assert s.lr_at(5) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert s.lr_at(10) == pytest.approx(1e-3)
    assert all(s.lr_at(i) < s.lr_at(i + 1) for i in range(10))


def test_cosine_halves_midway_and_ends_at_min_lr():
    s = LinearWarmupCosineLR(opt(), init_lr=1e-3, min_lr=1e-5, warmup_steps=10, total_steps=110, steps_per_epoch=11)
    assert s.lr_at(60) == pytest.approx((1e-3 + 1e-5) / 2)
    assert s.lr_at(110) == pytest.approx(1e-5)
    assert s.lr_at(500) == pytest.approx(1e-5)  # stays at the floor past the end
    assert all(s.lr_at(i) > s.lr_at(i + 1) for i in range(10, 110))


def test_step_decay_per_epoch_with_floor():
    s = LinearWarmupStepLR(
        opt(), init_lr=1.0, min_lr=0.3, decay_rate=0.5, warmup_steps=0, total_steps=100, steps_per_epoch=10
    )
    assert [s.lr_at(e * 10 + 3) for e in range(4)] == pytest.approx([1.0, 0.5, 0.3, 0.3])
    assert s.lr_at(9) == 1.0 and s.lr_at(10) == 0.5


def test_constant_after_warmup():
    s = ConstantLR(opt(), init_lr=0.1, warmup_lr=0.0, warmup_steps=4, total_steps=10, steps_per_epoch=5)
    assert [s.lr_at(i) for i in (0, 2, 4, 9, 50)] == pytest.approx([0.0, 0.05, 0.1, 0.1, 0.1])


def test_step_drives_every_group_with_its_scale():
    o = opt(2)
    s = LinearWarmupCosineLR(o, init_lr=1.0, warmup_lr=0.0, warmup_steps=4, total_steps=20, steps_per_epoch=5)
    assert [g["lr"] for g in o.param_groups] == [0.0, 0.0]
    s.step()
    s.step()
    assert [g["lr"] for g in o.param_groups] == pytest.approx([0.5, 1.0])
    assert s.get_last_lr() == pytest.approx([0.5, 1.0])


def test_state_round_trip_through_a_weights_only_file(tmp_path):
    a = LinearWarmupCosineLR(opt(), init_lr=1e-3, warmup_steps=3, total_steps=30, steps_per_epoch=10)
    for _ in range(7):
        a.step()
    atomic_save({"sched": a.state_dict()}, tmp_path / "s.pth")
    o = opt()
    b = LinearWarmupCosineLR(o, init_lr=1e-3, warmup_steps=3, total_steps=30, steps_per_epoch=10)
    b.load_state_dict(safe_torch_load(tmp_path / "s.pth")["sched"])
    assert b.last_step == 7 and o.param_groups[0]["lr"] == a.get_last_lr()[0]
    for _ in range(5):
        a.step(), b.step()
        assert a.get_last_lr() == b.get_last_lr()


def test_loading_a_state_keeps_this_schedules_settings_and_continues_at_its_step():
    old = LinearWarmupCosineLR(opt(), init_lr=1e-2, min_lr=1e-3, warmup_steps=3, total_steps=30, steps_per_epoch=10)
    for _ in range(12):
        old.step()
    o = opt()
    new = ConstantLR(o, init_lr=1e-5, warmup_steps=0, total_steps=60, steps_per_epoch=10)
    new.load_state_dict(old.state_dict())  # another schedule, another init_lr: the new settings win
    assert new.last_step == 12 and new.init_lr == 1e-5 and new.total_steps == 60
    assert o.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_built_from_run_config_through_the_registry():
    assert registry.get_lr_scheduler_class("linear_warmup_cosine_lr") is LinearWarmupCosineLR
    assert set(registry.list_lr_schedulers()) >= {"linear_warmup_cosine_lr", "linear_warmup_step_lr", "constant_lr"}
    s = build_lr_scheduler(opt(), run_cfg(lr_sched="linear_warmup_step_lr", init_lr=0.2, lr_decay_rate=0.1), 50, 10)
    assert isinstance(s, LinearWarmupStepLR) and s.lr_at(25) == pytest.approx(0.2 * 0.01)
    with pytest.raises(ConfigError, match="total_steps"):
        build_lr_scheduler(opt(), run_cfg(), 0, 1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.position_embeddings = nn.Embedding(6, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.bn = nn.BatchNorm1d(4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def no_weight_decay(self):
        return {"cls_token"}


def test_param_groups_decay_only_weight_matrices_and_skip_frozen():
    groups = param_groups(Net(), weight_decay=0.05)
    decay, plain = groups
    assert decay["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert sorted(decay["param_names"]) == ["embed.weight", "proj.weight"]
    assert sorted(plain["param_names"]) == sorted(
        ["position_embeddings.weight", "cls_token", "proj.bias", "norm.weight", "norm.bias", "bn.weight", "bn.bias"]
    )
    assert len(decay["params"]) == 2 and len(plain["params"]) == 7


def test_build_optimizer_is_adamw_with_run_settings_and_fused_on_cpu():
    o = build_optimizer(Net(), run_cfg(init_lr=3e-4, weight_decay=0.1, betas=[0.8, 0.9]))
    assert isinstance(o, torch.optim.AdamW)
    assert o.param_groups[0]["betas"] == (0.8, 0.9) and o.param_groups[0]["weight_decay"] == 0.1
    assert o.defaults["fused"] or o.defaults["foreach"]
    n_trainable = sum(1 for p in Net().parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in o.param_groups) == n_trainable


def test_build_optimizer_without_trainable_parameters_says_so():
    m = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(m, run_cfg())
