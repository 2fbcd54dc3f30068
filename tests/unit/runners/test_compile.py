"""run.compile: the training steps run through torch.compile and give the numbers of eager mode."""

import pytest
import torch

from lavis.common.logger import read_metrics
from lavis.runners.runner_epoch import RunnerEpoch
from tests.toy.components import build_runner


def train_losses(tmp_path, **run) -> tuple[list[float], RunnerEpoch]:
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=1, valid_splits=[], test_splits=[],
                             **run)
    runner.train()
    return [e["values"]["loss"] for e in read_metrics(tmp_path) if e["split"] == "train"], runner


@pytest.mark.slow  # inductor compiles C++ kernels: minutes on a shared 2-core machine
@pytest.mark.usefixtures("one_thread")
def test_compiled_training_matches_eager(tmp_path, monkeypatch):
    torch._dynamo.reset()
    # the toy model has dropout: draw its masks from eager's random stream so that the runs compare
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    eager, _ = train_losses(tmp_path / "eager")
    compiled, runner = train_losses(tmp_path / "compiled", compile=True)
    assert len(compiled) == len(eager) >= 5
    assert compiled == pytest.approx(eager, rel=1e-5, abs=1e-6)
    assert eager[-1] < eager[0]
    assert runner._compiled is None  # released when training ends


def test_compile_is_off_by_default():
    from lavis.common.run_schema import RunConfig

    assert RunConfig(task="captioning").compile is False
