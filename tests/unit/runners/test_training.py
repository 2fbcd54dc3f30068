"""The runners train the toy task for real: learning, accumulation, clipping, NaN handling,
checkpoints, evaluation and exact in-process resume."""

import math

import pytest
import torch

from lavis.common.checkpoint import safe_torch_load
from lavis.common.errors import CheckpointError, ConfigError, TrainingError
from lavis.common.logger import read_metrics
from lavis.runners.runner_epoch import RunnerEpoch
from lavis.runners.runner_iter import RunnerIter
from tests.toy.components import ToyTask, build_runner

RUNNERS = {
    "runner_epoch": (RunnerEpoch, {"max_epoch": 4}),
    "runner_iter": (RunnerIter, {"max_iters": 40, "iters_per_inner_epoch": 15}),
}
DETERMINISTIC = ("loss", "loss_avg", "lr", "grad_norm", "accuracy", "agg_metrics", "n")


def deterministic_events(folder):
    """(split, epoch, step, values without timings) of every logged event."""
    return [(e["split"], e["epoch"], e["step"], {k: v for k, v in e["values"].items() if k in DETERMINISTIC})
            for e in read_metrics(folder)]


@pytest.mark.parametrize("name", RUNNERS)
def test_toy_model_learns(tmp_path, name):
    cls, extra = RUNNERS[name]
    runner, _ = build_runner(cls, output_dir=str(tmp_path), **extra)
    before = runner.evaluate()["toy/test"]["accuracy"]
    result = runner.train()
    losses = [e["values"]["loss"] for e in read_metrics(tmp_path) if e["split"] == "train"]
    assert result["train"]["global_step"] == len(losses) == (48 if name == "runner_epoch" else 40)
    assert result["train"]["loss"] < 0.5 * losses[0]  # smoothed final loss vs the first step's
    assert result["valid"]["toy/val"]["accuracy"] >= 75
    assert result["test"]["toy/test"]["accuracy"] >= before + 25
    assert result["best"]["agg_metrics"] == max(
        e["values"]["agg_metrics"] for e in read_metrics(tmp_path) if e["split"] == "toy/val"
    )


def test_accumulating_two_batches_equals_one_double_batch(tmp_path):
    common = dict(max_epoch=1, toy_dropout=0.0, valid_splits=[], test_splits=[], max_grad_norm=1.0)
    a, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path / "a"), batch_size_train=8, accum_grad_iters=2, **common)
    b, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path / "b"), batch_size_train=16, accum_grad_iters=1, **common)
    a.train(), b.train()
    assert a.state.global_step == b.state.global_step == 6
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    la = [e["values"]["loss"] for e in read_metrics(tmp_path / "a") if e["split"] == "train"]
    lb = [e["values"]["loss"] for e in read_metrics(tmp_path / "b") if e["split"] == "train"]
    assert la == pytest.approx(lb, rel=1e-5)


def test_gradient_clipping_bounds_the_update_norm(tmp_path):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=1, max_grad_norm=0.05,
                             valid_splits=[], test_splits=[])
    seen = []

    def hook(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    runner.optimizer.register_step_pre_hook(hook)
    runner.train()
    logged = [e["values"]["grad_norm"] for e in read_metrics(tmp_path) if e["split"] == "train"]
    assert len(seen) == len(logged) == 12
    assert max(seen) <= 0.05 * (1 + 1e-4)  # what the optimizer saw was clipped ...
    assert min(logged) > 0.05  # ... from larger norms, which the log reports


def test_nan_loss_raises_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=2, save_every_iters=2, toy_nan_at_call=5)
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at global step 5 .*checkpoint_latest.pth"):
        runner.train()
    ckpt = safe_torch_load(tmp_path / "checkpoint_latest.pth")
    assert ckpt["state"]["global_step"] == 4
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())  # step 5 never applied
    assert runner.state.global_step == 4


def test_checkpoints_hold_everything_resume_needs(tmp_path):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=2, save_every_iters=5)
    result = runner.train()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint_0.pth", "checkpoint_1.pth", "checkpoint_best.pth", "checkpoint_last_stable.pth",
                     "checkpoint_latest.pth",
                     "config.yaml", "metrics.jsonl"]
    ckpt = safe_torch_load(tmp_path / "checkpoint_latest.pth")  # weights_only=True
    assert {"model", "optimizer", "lr_scheduler", "scaler", "state", "rng", "meters", "config"} <= set(ckpt)
    assert ckpt["state"]["epoch"] == 1 and ckpt["state"]["epoch_done"] and ckpt["state"]["global_step"] == 24
    assert len(ckpt["rng"]) == 1 and {"python", "numpy", "torch"} <= set(ckpt["rng"][0])
    assert ckpt["config"]["run"]["max_epoch"] == 2 and ckpt["lr_scheduler"]["last_step"] == 24
    first = safe_torch_load(tmp_path / "checkpoint_0.pth")
    assert first["state"]["global_step"] == 12
    assert not torch.equal(first["model"]["net.0.weight"], ckpt["model"]["net.0.weight"])
    best = safe_torch_load(tmp_path / "checkpoint_best.pth")
    assert best["state"]["epoch"] == result["best"]["epoch"]
    assert "max_epoch: 2" in (tmp_path / "config.yaml").read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_evaluate_uses_the_weights_eval_checkpoint_names(tmp_path):
    trained, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=2)
    result = trained.train()
    fresh, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), eval_checkpoint="best")
    assert fresh.evaluate() == result["test"]
    last = read_metrics(tmp_path)[-1]
    assert (last["split"], last["epoch"], last["step"]) == ("toy/test", "best", 12 * (result["best"]["epoch"] + 1))
    at0, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), eval_checkpoint=str(tmp_path / "checkpoint_0.pth"))
    at0.evaluate(["val"])
    assert torch.equal(at0.model.net[0].weight, safe_torch_load(tmp_path / "checkpoint_0.pth")["model"]["net.0.weight"])
    untrained, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path / "other"), eval_checkpoint="best")
    with pytest.raises(CheckpointError, match="checkpoint_best.pth does not exist"):
        untrained.evaluate()


class Interrupt(Exception):
    pass


class InterruptedTask(ToyTask):
    """Stops training at a given train_step call, as a crash would."""

    stop_at = 0

    def train_step(self, model, samples):
        if self.calls + 1 == self.stop_at:
            raise Interrupt()
        return super().train_step(model, samples)


@pytest.mark.parametrize("name,stop_at", [("runner_epoch", 20), ("runner_epoch", 26), ("runner_iter", 30)])
def test_resume_after_a_crash_is_exact(tmp_path, name, stop_at):
    cls, extra = RUNNERS[name]
    extra = {**extra, "save_every_iters": 4, "accum_grad_iters": 2, "toy_n_train": 100, "log_freq": 3}
    full, _ = build_runner(cls, output_dir=str(tmp_path / "full"), **extra)
    expected = full.train()
    InterruptedTask.stop_at = stop_at
    crashed, _ = build_runner(cls, InterruptedTask, output_dir=str(tmp_path / "run"), **extra)
    with pytest.raises(Interrupt):
        crashed.train()
    ckpt = safe_torch_load(tmp_path / "run" / "checkpoint_latest.pth")
    assert 0 < ckpt["state"]["global_step"] < expected["train"]["global_step"]
    resumed, _ = build_runner(cls, output_dir=str(tmp_path / "run"),
                              resume_ckpt_path=str(tmp_path / "run" / "checkpoint_latest.pth"), **extra)
    assert resumed.train() == expected
    a = safe_torch_load(tmp_path / "full" / "checkpoint_latest.pth")
    b = safe_torch_load(tmp_path / "run" / "checkpoint_latest.pth")
    for key, t in a["model"].items():
        assert torch.equal(t, b["model"][key]), key
    assert deterministic_events(tmp_path / "full") == deterministic_events(tmp_path / "run")


def test_resume_rejects_a_weights_only_file(tmp_path):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=1)
    torch.save(runner.model.state_dict(), tmp_path / "weights.pth")
    again, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), resume_ckpt_path=str(tmp_path / "weights.pth"))
    with pytest.raises(CheckpointError, match="not a training checkpoint.*load_finetuned"):
        again.train()


@pytest.mark.parametrize(
    "cls,run,message",
    [
        (RunnerEpoch, {"amp": "fp16"}, "fp16 needs a CUDA GPU"),
        (RunnerEpoch, {"valid_splits": ["validation"]},
         r"run.valid_splits: 'validation' is not a split.*toy: train, val, test"),
        (RunnerEpoch, {"train_splits": ["nope"]}, "run.train_splits"),
        (RunnerEpoch, {"num_workers": -1}, "run.num_workers: must be >= 0"),
        (RunnerIter, {}, "run.max_iters: runner_iter needs"),
    ],
)
def test_config_mistakes_fail_before_training(tmp_path, cls, run, message):
    with pytest.raises(ConfigError, match=message):
        build_runner(cls, output_dir=str(tmp_path), **run)


def test_bf16_autocast_on_cpu_trains(tmp_path):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=2, amp="bf16")
    assert runner.precision.dtype == torch.bfloat16 and runner.scaler is None
    result = runner.train()
    assert math.isfinite(result["train"]["loss"]) and result["valid"]["toy/val"]["accuracy"] >= 70


def test_tensorboard_events_are_written_when_asked(tmp_path):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=1, tensorboard=True)
    runner.train()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/lr", "toy/val/agg_metrics", "toy/test/accuracy"} <= set(tags)
    assert len(acc.Scalars("train/loss")) == 12


class UnscoredToyTask(ToyTask):
    """Validation that computes no metric (like captioning with run.report_metric: false)."""

    def after_evaluation(self, val_result, split_name, epoch, dataset):
        return {"agg_metrics": None, "n": len(val_result)}


def test_without_a_metric_the_latest_epoch_is_best_and_the_log_says_so(tmp_path, capsys):
    runner, _ = build_runner(RunnerEpoch, task_cls=UnscoredToyTask, output_dir=str(tmp_path), max_epoch=3)
    result = runner.train()
    assert result["best"] == {"epoch": 2, "agg_metrics": None}  # not epoch 0, which a score of 0.0 kept
    best = safe_torch_load(tmp_path / "checkpoint_best.pth")
    latest = safe_torch_load(tmp_path / "checkpoint_latest.pth")
    assert best["state"]["epoch"] == latest["state"]["epoch"] == 2
    assert all(torch.equal(best["model"][k], latest["model"][k]) for k in latest["model"])
    said = [line for line in capsys.readouterr().out.splitlines() if "computes no metric" in line]
    assert len(said) == 1 and "checkpoint_best.pth holds the latest epoch's weights" in said[0]
