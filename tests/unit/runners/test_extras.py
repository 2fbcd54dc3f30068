"""Scalar ``ModelOutput.extras`` are logged like the loss: averaged over the micro-batches of an
optimizer step, into stdout, metrics.jsonl and TensorBoard."""

import pytest
import torch

from lavis.common.errors import TrainingError
from lavis.common.logger import read_metrics
from lavis.runners.runner_epoch import RunnerEpoch
from tests.toy.components import ToyTask, build_runner


class CountingTask(ToyTask):
    """Adds the call number as a scalar tensor and a non-scalar tensor to the model's extras."""

    def train_step(self, model, samples):
        out = super().train_step(model, samples)
        out.extras["call"] = torch.tensor(float(self.calls))
        out.extras["per_sample"] = torch.ones(3)
        return out


def test_scalar_extras_are_averaged_over_the_step_and_logged_everywhere(tmp_path, capsys):
    runner, _ = build_runner(RunnerEpoch, CountingTask, output_dir=str(tmp_path), max_epoch=1, accum_grad_iters=2,
                             valid_splits=[], test_splits=[], tensorboard=True)
    runner.train()
    train = [e for e in read_metrics(tmp_path) if e["split"] == "train"]
    assert [e["values"]["call"] for e in train] == [2 * s - 0.5 for s in range(1, 7)]  # mean of calls 2s-1 and 2s
    assert all(0.0 <= e["values"]["train_accuracy"] <= 1.0 for e in train)  # the toy model's own extra
    assert all("per_sample" not in e["values"] and "logits" not in e["values"] for e in train)
    out = capsys.readouterr().out
    assert "call=11.5" in out and "not logging extras ['logits', 'per_sample']" in out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [round(s.value, 3) for s in acc.Scalars("train/call")] == [1.5, 3.5, 5.5, 7.5, 9.5, 11.5]


class ClashingTask(ToyTask):
    def train_step(self, model, samples):
        out = super().train_step(model, samples)
        out.extras["lr"] = torch.tensor(1.0)
        return out


def test_an_extra_named_like_a_runner_value_is_an_error(tmp_path):
    runner, _ = build_runner(RunnerEpoch, ClashingTask, output_dir=str(tmp_path), max_epoch=1)
    with pytest.raises(TrainingError, match=r"returned extras \['lr'\], names the runner logs itself"):
        runner.train()
