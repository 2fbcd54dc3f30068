"""Non-finite steps: run.skip_nonfinite_steps skips them without touching weights or optimizer
state (and resumes exactly), more than allowed stop the run, and the error tells the truth about
which checkpoint predates the blow-up (checkpoint_last_stable.pth)."""

import re

import pytest
import torch

from lavis.common.checkpoint import safe_torch_load
from lavis.common.errors import TrainingError
from lavis.common.logger import read_metrics
from lavis.runners.runner_epoch import RunnerEpoch
from lavis.runners.runner_iter import RunnerIter
from tests.toy.components import ToyTask, build_runner


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class NanTask(ToyTask):
    """NaN loss at the train_step calls in ``nan_calls``; snapshots the weights at every call."""

    nan_calls: set[int] = set()

    def train_step(self, model, samples):
        self.snapshots = getattr(self, "snapshots", {})
        self.snapshots[self.calls + 1] = params(getattr(model, "module", model))
        out = super().train_step(model, samples)
        if self.calls in self.nan_calls:
            out.loss = out.loss * float("nan")
        return out


class InfGradTask(ToyTask):
    """A finite loss whose gradient is inf at call ``bad_call`` (a hook spoils one weight's grad)."""

    bad_call = 0

    def train_step(self, model, samples):
        out = super().train_step(model, samples)
        if self.calls == self.bad_call:
            weight = getattr(model, "module", model).net[0].weight
            self._handle = weight.register_hook(lambda g: g * float("inf"))
        elif getattr(self, "_handle", None) is not None:
            self._handle.remove()
            self._handle = None
        return out


def test_a_skipped_step_changes_no_weights_and_is_logged(tmp_path):
    NanTask.nan_calls = {5}  # calls 5 and 6 make optimizer step 3 (accumulation of 2)
    runner, task = build_runner(RunnerEpoch, NanTask, output_dir=str(tmp_path), max_epoch=1, accum_grad_iters=2,
                                skip_nonfinite_steps=1, valid_splits=[], test_splits=[])
    adam_steps = []
    runner.optimizer.register_step_post_hook(lambda opt, a, k: adam_steps.append(1))
    result = runner.train()
    for key, before in task.snapshots[5].items():  # the weights call 7 saw are those call 5 saw
        assert torch.equal(before, task.snapshots[7][key]), key
    assert any(not torch.equal(v, task.snapshots[5][k]) for k, v in task.snapshots[9].items())  # step 4 did update
    # 12 micro-batches -> 6 groups, one skipped: 5 optimizer updates, numbered 1..5
    assert runner.state.skipped_steps == 1 and result["train"]["global_step"] == 5 and len(adam_steps) == 5
    opt_state = next(iter(runner.optimizer.state.values()))
    assert float(opt_state["step"]) == 5
    skipped = [e for e in read_metrics(tmp_path) if e["split"] == "train/skipped"]
    assert [(e["step"], e["values"]["nonfinite"], e["values"]["skipped_steps"]) for e in skipped] == [(3, "loss", 1)]
    assert [e["step"] for e in read_metrics(tmp_path) if e["split"] == "train"] == [1, 2, 3, 4, 5]


def test_an_inf_gradient_with_a_finite_loss_is_skipped_too(tmp_path):
    InfGradTask.bad_call = 4
    runner, task = build_runner(RunnerEpoch, InfGradTask, output_dir=str(tmp_path), max_epoch=1,
                                skip_nonfinite_steps=2, valid_splits=[], test_splits=[])
    result = runner.train()
    skipped = [e for e in read_metrics(tmp_path) if e["split"] == "train/skipped"]
    assert [(e["step"], e["values"]["nonfinite"]) for e in skipped] == [(4, "gradient norm")]
    assert result["train"]["global_step"] == 11 and runner.state.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())


def test_more_nonfinite_steps_than_allowed_stop_the_run(tmp_path):
    NanTask.nan_calls = {3, 6}
    runner, _ = build_runner(RunnerEpoch, NanTask, output_dir=str(tmp_path), max_epoch=1, skip_nonfinite_steps=1)
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at global step 5 .*after skipping 1 such step"):
        runner.train()
    assert runner.state.global_step == 4 and runner.state.skipped_steps == 1


class Interrupt(Exception):
    pass


class CrashAfterNan(NanTask):
    stop_at = 0

    def train_step(self, model, samples):
        if self.calls + 1 == self.stop_at:
            raise Interrupt()
        return super().train_step(model, samples)


@pytest.mark.parametrize("cls,extra", [(RunnerEpoch, {"max_epoch": 3}), (RunnerIter, {"max_iters": 30})])
def test_resume_after_a_skipped_step_is_exact(tmp_path, cls, extra):
    extra = {**extra, "save_every_iters": 4, "accum_grad_iters": 2, "skip_nonfinite_steps": 1, "log_freq": 2}
    NanTask.nan_calls = {9}
    full, _ = build_runner(cls, NanTask, output_dir=str(tmp_path / "full"), **extra)
    expected = full.train()
    CrashAfterNan.stop_at = 30
    crashed, _ = build_runner(cls, CrashAfterNan, output_dir=str(tmp_path / "run"), **extra)
    with pytest.raises(Interrupt):
        crashed.train()
    latest = tmp_path / "run" / "checkpoint_latest.pth"
    assert safe_torch_load(latest)["state"]["skipped_steps"] == 1  # the skip happened before the crash
    NanTask.nan_calls = set()  # the bad batch lies behind the checkpoint
    resumed, _ = build_runner(cls, NanTask, output_dir=str(tmp_path / "run"), resume_ckpt_path=str(latest), **extra)
    assert resumed.train() == expected
    a, b = (safe_torch_load(tmp_path / d / "checkpoint_latest.pth") for d in ("full", "run"))
    assert a["state"] == b["state"] and a["state"]["skipped_steps"] == 1
    for key, t in a["model"].items():
        assert torch.equal(t, b["model"][key]), key
    strip = lambda es: [(e["split"], e["step"], {k: v for k, v in e["values"].items() if "per_s" not in k})  # noqa: E731
                        for e in es]
    assert strip(read_metrics(tmp_path / "full")) == strip(read_metrics(tmp_path / "run"))


def test_divergence_names_the_last_checkpoint_from_before_the_loss_rose(tmp_path):
    # warm-up from 1e-3 towards a far too high init_lr: the first steps are fine, then the loss explodes
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=3, init_lr=1e3, warmup_lr=1e-3,
                             warmup_steps=10, save_every_iters=2, valid_splits=[], test_splits=[])
    with pytest.raises(TrainingError) as e:
        runner.train()
    msg = str(e.value)
    stable, latest = (safe_torch_load(tmp_path / n) for n in ("checkpoint_last_stable.pth", "checkpoint_latest.pth"))
    assert stable["state"]["global_step"] < latest["state"]["global_step"]
    assert re.search(rf"latest checkpoint {re.escape(str(tmp_path))}/checkpoint_latest.pth \(global step "
                     rf"{latest['state']['global_step']}, .*may already hold diverged weights", msg)
    assert f"from before the loss rose is {tmp_path}/checkpoint_last_stable.pth (global step " \
           f"{stable['state']['global_step']})" in msg
    assert f"--options run.resume_ckpt_path={tmp_path}/checkpoint_last_stable.pth run.init_lr=100 " in msg
    losses = {e["step"]: e["values"]["loss"] for e in read_metrics(tmp_path) if e["split"] == "train"}
    healthy = losses[1]
    assert all(losses[s] <= 3 * healthy for s in range(1, stable["state"]["global_step"] + 1))
    assert max(losses.values()) > 3 * healthy


def test_divergence_from_the_start_says_no_checkpoint_is_safe(tmp_path):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=3, init_lr=1e3, warmup_steps=0,
                             lr_sched="constant_lr", save_every_iters=2, valid_splits=[], test_splits=[])
    with pytest.raises(TrainingError, match=r"every checkpoint so far, including the latest .*may hold diverged "
                                            r"weights. Start again with a lower learning rate: --options run.init_lr=100 "):
        runner.train()
    assert not (tmp_path / "checkpoint_last_stable.pth").exists()


def test_nan_before_any_checkpoint_says_so(tmp_path):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=1, toy_nan_at_call=2)
    with pytest.raises(TrainingError, match="no checkpoint was written yet. Start again with a lower learning rate: "
                                            r"--options run.init_lr=0.001 "):
        runner.train()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with a GradScaler needs CUDA")
def test_fp16_inf_gradients_are_the_scalers_to_skip_and_not_counted(tmp_path):
    InfGradTask.bad_call = 4
    runner, _ = build_runner(RunnerEpoch, InfGradTask, output_dir=str(tmp_path), max_epoch=1, device="cuda",
                             amp="fp16", skip_nonfinite_steps=0, valid_splits=[], test_splits=[])
    scale0 = runner.scaler.get_scale()
    result = runner.train()  # no error although skip_nonfinite_steps is 0: the scaler skipped that step
    assert result["train"]["global_step"] == 12 and runner.state.skipped_steps == 0
    assert runner.scaler.get_scale() < scale0
    assert not [e for e in read_metrics(tmp_path) if e["split"] == "train/skipped"]
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
