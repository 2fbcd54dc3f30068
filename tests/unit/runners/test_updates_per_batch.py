"""A task that makes several optimizer updates on each batch (``updates_per_batch`` /
``train_updates``, what PPO epochs use): the runner steps after every output, plans the LR
schedule on the number, resumes exactly, and says so when the task's two answers disagree."""

import pytest
import torch

from lavis.common.checkpoint import safe_torch_load
from lavis.common.errors import TrainingError
from lavis.common.logger import read_metrics
from lavis.runners.runner_epoch import RunnerEpoch
from lavis.runners.runner_iter import RunnerIter
from tests.toy.components import ToyTask, build_runner

NO_EVAL = dict(valid_splits=[], test_splits=[], toy_dropout=0.0)


class Crash(Exception):
    pass


class ThriceTask(ToyTask):
    """Three updates on each batch; records the batch ids and a weight at every output."""

    updates = 3
    yields = 3
    stop_at = 0  # crash at this train_step call (1-based; 0: never)

    def __init__(self, run_cfg):
        super().__init__(run_cfg)
        self.seen: list[tuple[list[int], torch.Tensor]] = []

    def updates_per_batch(self) -> int:
        return self.updates

    def train_updates(self, model, samples):
        for _ in range(self.yields):
            if self.calls + 1 == self.stop_at:
                raise Crash
            inner = getattr(model, "module", model)
            self.seen.append((list(samples["instance_id"]), next(inner.parameters()).detach().clone()))
            yield self.train_step(model, samples)


def train_losses(folder):
    return [e["values"]["loss"] for e in read_metrics(folder) if e["split"] == "train"]


def test_each_batch_gets_three_steps_each_seeing_the_last_ones_weights(tmp_path):
    runner, task = build_runner(RunnerEpoch, ThriceTask, output_dir=str(tmp_path), max_epoch=1, toy_n_train=40,
                                **NO_EVAL)
    result = runner.train()
    assert result["train"]["global_step"] == 15 == len(train_losses(tmp_path))  # 5 batches of 8, 3 steps each
    ids = [s[0] for s in task.seen]
    assert all(ids[i] == ids[i + 1] == ids[i + 2] for i in range(0, 15, 3)) and ids[0] != ids[3]
    weights = [s[1] for s in task.seen]
    assert all(not torch.equal(a, b) for a, b in zip(weights, weights[1:]))  # a step between every two outputs
    # the schedule spans the 15 steps: warm-up, then cosine down to min_lr at the last one
    lrs = [e["values"]["lr"] for e in read_metrics(tmp_path) if e["split"] == "train"]
    assert lrs[2] == pytest.approx(1e-2) and lrs[-1] < lrs[-2] < lrs[2]
    # throughput: each of a batch's three steps is credited a third of its 8 samples (logged at
    # every step here), so no step reads 0 and the 40 samples are counted once
    train = [e["values"] for e in read_metrics(tmp_path) if e["split"] == "train"]
    counted = [v["samples_per_s"] * v["s_per_step"] for v in train]
    assert all(c == pytest.approx(8 / 3) for c in counted) and sum(counted) == pytest.approx(40)


def test_runner_iter_stops_a_batch_s_steps_at_the_end_of_an_inner_epoch(tmp_path):
    runner, task = build_runner(RunnerIter, ThriceTask, output_dir=str(tmp_path), max_iters=10,
                                iters_per_inner_epoch=5, **NO_EVAL)
    assert runner.train()["train"]["global_step"] == 10 == len(train_losses(tmp_path))
    ids = [s[0] for s in task.seen]
    # batches give 3 + 2 steps (the inner epoch ends), then 3 + 2 again: four batches in all
    assert [ids[i] == ids[i - 1] for i in range(1, 10)] == [True, True, False, True, False, True, True, False, True]


@pytest.mark.parametrize("cls,extra,stop_at,saved_at", [
    (RunnerEpoch, {"max_epoch": 2}, 20, 9),  # crash in step 10: saved at 6 and 9 (4 and 8 passed)
    (RunnerIter, {"max_iters": 40, "iters_per_inner_epoch": 14}, 41, 20),  # steps 14 (epoch end), 17, 20, crash in 21
])
def test_resume_with_several_steps_per_batch_is_exact(tmp_path, cls, extra, stop_at, saved_at):
    extra = {**extra, **NO_EVAL, "save_every_iters": 4, "accum_grad_iters": 2, "toy_n_train": 48}
    full, _ = build_runner(cls, ThriceTask, output_dir=str(tmp_path / "full"), **extra)
    expected = full.train()
    ThriceTask.stop_at = stop_at
    try:
        crashed, _ = build_runner(cls, ThriceTask, output_dir=str(tmp_path / "run"), **extra)
        with pytest.raises(Crash):
            crashed.train()
    finally:
        ThriceTask.stop_at = 0
    # written between batches (each gets 3 steps), once a multiple of 4 is reached
    assert safe_torch_load(tmp_path / "run" / "checkpoint_latest.pth")["state"]["global_step"] == saved_at
    resumed, _ = build_runner(cls, ThriceTask, output_dir=str(tmp_path / "run"),
                              resume_ckpt_path=str(tmp_path / "run" / "checkpoint_latest.pth"), **extra)
    assert resumed.train() == expected
    a = safe_torch_load(tmp_path / "full" / "checkpoint_latest.pth")["model"]
    b = safe_torch_load(tmp_path / "run" / "checkpoint_latest.pth")["model"]
    assert all(torch.equal(t, b[k]) for k, t in a.items())
    assert train_losses(tmp_path / "full") == train_losses(tmp_path / "run")


@pytest.mark.parametrize("yields,which", [(2, "fewer"), (4, "more")])
def test_a_task_that_yields_another_number_of_outputs_is_told(tmp_path, yields, which):
    runner, task = build_runner(RunnerEpoch, ThriceTask, output_dir=str(tmp_path), max_epoch=1, **NO_EVAL)
    task.yields = yields
    with pytest.raises(TrainingError, match=f"ThriceTask.train_updates yielded {which} outputs than "
                                            r"ThriceTask.updates_per_batch\(\) = 3"):
        runner.train()


class ProgressTask(ToyTask):
    """Records what the runner told the model before each output (``train_progress``)."""

    def __init__(self, run_cfg):
        super().__init__(run_cfg)
        self.progress: list = []

    def train_step(self, model, samples):
        self.progress.append(getattr(model, "module", model).train_progress)
        return super().train_step(model, samples)


@pytest.mark.parametrize("runner_cls, settings", [(RunnerEpoch, dict(max_epoch=2)),
                                                  (RunnerIter, dict(max_iters=7, iters_per_inner_epoch=3))])
def test_the_model_is_told_its_training_progress_before_each_batch(tmp_path, runner_cls, settings):
    runner, task = build_runner(runner_cls, ProgressTask, output_dir=str(tmp_path), toy_n_train=40, **settings,
                                **NO_EVAL)
    runner.train()
    per_epoch = 5 if runner_cls is RunnerEpoch else 3  # 5 batches of 8 / iters_per_inner_epoch
    steps = 10 if runner_cls is RunnerEpoch else 7
    assert [(p.global_step, p.steps_per_epoch) for p in task.progress] == [(i, per_epoch) for i in range(steps)]
    assert task.progress[per_epoch].epochs == 1.0  # the first step of the second (inner) epoch
