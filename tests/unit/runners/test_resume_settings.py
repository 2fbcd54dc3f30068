"""Resuming with changed run settings: the config's values win (LR schedule rebuilt at the saved
step, optimizer hyperparameters from the config), every difference is logged as old -> new, and
settings that cannot apply cleanly say so."""

import shutil

import pytest

from lavis.common.errors import ConfigError
from lavis.common.optim import ConstantLR, LinearWarmupCosineLR
from lavis.runners import checkpointing as ckpt_io
from lavis.runners.runner_epoch import RunnerEpoch
from tests.toy.components import build_runner

BASE = dict(max_epoch=2, save_every_iters=4, valid_splits=[], test_splits=[], log_freq=1)


@pytest.fixture
def first_epoch(tmp_path):
    """A finished one-epoch run (12 optimizer steps); its checkpoint_latest.pth is at step 12."""
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), **{**BASE, "max_epoch": 1})
    runner.train()
    return tmp_path / "checkpoint_latest.pth"


def lrs_used(runner):
    seen = []
    runner.optimizer.register_step_pre_hook(
        lambda opt, a, k: seen.append([(g["lr"], g["weight_decay"], g["betas"]) for g in opt.param_groups]))
    return seen


def test_changed_settings_win_and_are_listed(tmp_path, first_epoch, capsys):
    new = dict(init_lr=1e-5, min_lr=0.0, warmup_steps=0, lr_sched="constant_lr", weight_decay=0.2,
               betas=[0.8, 0.9], log_freq=3)
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), resume_ckpt_path=str(first_epoch),
                             **{**BASE, **new})
    seen = lrs_used(runner)
    runner.train()
    out = capsys.readouterr().out
    assert runner.state.global_step == 24 and len(seen) == 12
    decay, plain = seen[0]  # the first step after resume: all from the new config
    assert decay == (pytest.approx(1e-5), 0.2, (0.8, 0.9)) and plain == (pytest.approx(1e-5), 0.0, (0.8, 0.9))
    assert all(groups[0][0] == pytest.approx(1e-5) for groups in seen)
    text = out
    for line in ("run.init_lr: 0.01 -> 1e-05 (using new)", "run.lr_sched: 'linear_warmup_cosine_lr' -> 'constant_lr' "
                 "(using new)", "run.weight_decay: 0.01 -> 0.2 (using new)", "run.betas: [0.9, 0.999] -> [0.8, 0.9] "
                 "(using new)", "run.max_epoch: 1 -> 2 (using new)", "run.log_freq: 1 -> 3 (using new)"):
        assert line in text
    assert "rebuilt from the new settings at global step 12" in text
    assert "will not match an uninterrupted one" in text
    assert "resume_ckpt_path" not in text.split("differ from the checkpoint's:")[1]


def test_the_schedule_continues_at_the_saved_step_with_the_new_settings(tmp_path, first_epoch):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), resume_ckpt_path=str(first_epoch),
                             **{**BASE, "init_lr": 5e-3})
    seen = lrs_used(runner)
    runner.train()
    assert isinstance(runner.lr_scheduler, LinearWarmupCosineLR)
    expected = LinearWarmupCosineLR(runner.optimizer, init_lr=5e-3, min_lr=1e-4, warmup_lr=1e-3, warmup_steps=2,
                                    total_steps=24, steps_per_epoch=12)
    assert [groups[0][0] for groups in seen] == pytest.approx([expected.lr_at(s) for s in range(12, 24)])


def test_settings_that_do_not_change_the_numbers_do_not_claim_a_mismatch(tmp_path, first_epoch, capsys):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), resume_ckpt_path=str(first_epoch),
                             **{**BASE, "max_epoch": 1, "log_freq": 5})
    runner.train()
    out = capsys.readouterr().out
    assert "run.log_freq: 1 -> 5 (using new)" in out
    assert "will not match" not in out


def test_a_schedule_that_ends_before_the_checkpoint_is_a_config_error(tmp_path):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), **BASE)
    runner.train()
    again, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), resume_ckpt_path=str(tmp_path / "checkpoint_0.pth"),
                            **{**BASE, "max_epoch": 1})
    again.train()  # epoch 0 is complete: nothing left to do, no error
    again, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path),
                            resume_ckpt_path=str(tmp_path / "checkpoint_latest.pth"), **{**BASE, "max_epoch": 1})
    with pytest.raises(ConfigError, match=r"run.max_epoch: the checkpoint .* is in epoch 1 \(global step 24\), past "
                                          r"the end of this run \(1 epoch\(s\), numbered from 0\); raise run.max_epoch"):
        again.train()


def test_a_changed_batch_size_maps_the_data_position_and_says_so(tmp_path, capsys, monkeypatch):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), **{**BASE, "max_epoch": 1, "save_every_iters": 6})
    orig = ckpt_io.write_checkpoints

    def keep_step6(payload, folder, epoch, epoch_end, improved):
        out = orig(payload, folder, epoch, epoch_end, improved)
        if payload["state"]["global_step"] == 6:
            shutil.copyfile(out, tmp_path / "step6.pth")
        return out

    monkeypatch.setattr(ckpt_io, "write_checkpoints", keep_step6)  # keep the mid-epoch checkpoint of step 6
    runner.train()
    monkeypatch.undo()
    resumed, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path / "r"), resume_ckpt_path=str(tmp_path / "step6.pth"),
                              **{**BASE, "max_epoch": 1, "batch_size_train": 16})
    resumed.train()
    out = capsys.readouterr().out
    assert "1 rank(s) x batch 8 on 1 rank(s) x batch 16: the position in data epoch 0 (48 samples consumed) is " \
           "mapped to micro-batch 3" in out
    assert "run.batch_size_train: 8 -> 16 (using new)" in out
    assert resumed.state.data_batches == 6 and resumed.state.global_step == 6 + 3  # micro-batches 3, 4, 5 of 16


def test_constant_schedule_resumed_from_cosine_uses_the_new_class(tmp_path, first_epoch):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), resume_ckpt_path=str(first_epoch),
                             **{**BASE, "lr_sched": "constant_lr", "init_lr": 2e-3, "warmup_steps": 0})
    runner.train()
    assert isinstance(runner.lr_scheduler, ConstantLR) and runner.lr_scheduler.last_step == 24


def test_an_iteration_run_resumed_past_its_new_max_iters_is_a_config_error(tmp_path):
    from lavis.runners.runner_iter import RunnerIter

    runner, _ = build_runner(RunnerIter, output_dir=str(tmp_path), max_iters=10, valid_splits=[], test_splits=[])
    runner.train()
    again, _ = build_runner(RunnerIter, output_dir=str(tmp_path), max_iters=8, valid_splits=[], test_splits=[],
                            resume_ckpt_path=str(tmp_path / "checkpoint_latest.pth"))
    with pytest.raises(ConfigError, match=r"run.max_iters: the checkpoint .* is at global step 10, past the end of "
                                          r"this run \(8 steps\); raise run.max_iters"):
        again.train()
