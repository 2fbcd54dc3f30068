"""Exact resume after SIGKILL: a run killed mid-epoch and resumed with ``run.resume_ckpt_path``
ends with bit-identical weights, optimizer state and metrics to an uninterrupted run, for both
runners; resuming with 2 data-loader workers instead of 0 changes nothing. And the commands the
divergence error suggests run, at the learning rate they set."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lavis.common.checkpoint import safe_torch_load  # noqa: E402
from tests.toy.cli import assert_same_run, finish, kill_mid_epoch, start, write_config  # noqa: E402

SCENARIOS = {
    # 100 items / 8 = 13 micro-batches per epoch, 7 optimizer steps (the last one of a single batch)
    "runner_epoch": dict(run={"runner": "runner_epoch", "max_epoch": 3, "toy_n_train": 100, "batch_size_train": 8,
                              "accum_grad_iters": 2, "save_every_iters": 2, "log_freq": 3},
                         kill_after_step=9, total_steps=21, workers_variant=True),
    # 88 items / 8 = 11 micro-batches per data epoch; inner epochs of 8 steps cut across data epochs
    "runner_iter": dict(run={"runner": "runner_iter", "max_iters": 24, "iters_per_inner_epoch": 8, "toy_n_train": 88,
                             "batch_size_train": 8, "accum_grad_iters": 2, "save_every_iters": 3, "log_freq": 2},
                        kill_after_step=10, total_steps=24, workers_variant=False),
}


@pytest.mark.parametrize("runner", SCENARIOS)
def test_sigkill_and_resume_is_bitwise_exact(tmp_path, runner):
    sc = SCENARIOS[runner]
    cfg = write_config(tmp_path / "toy.yaml", **sc["run"])
    ref, run = tmp_path / "reference", tmp_path / "killed"
    reference = start(cfg, [f"run.output_dir={ref}"], result=tmp_path / "reference.json")
    victim = start(cfg, [f"run.output_dir={run}", "run.toy_step_delay=0.04"])
    seen = kill_mid_epoch(victim, run, sc["kill_after_step"])
    finish(reference)

    at_kill = safe_torch_load(run / "checkpoint_latest.pth")["state"]
    assert at_kill["global_step"] < sc["total_steps"] and seen["global_step"] <= at_kill["global_step"]
    resumes = {"w0": run}
    if sc["workers_variant"]:
        shutil.copytree(run, tmp_path / "killed_w2")
        resumes["w2"] = tmp_path / "killed_w2"
    procs = {
        tag: start(cfg, [f"run.output_dir={folder}", f"run.resume_ckpt_path={folder / 'checkpoint_latest.pth'}",
                         f"run.num_workers={2 if tag == 'w2' else 0}"], result=tmp_path / f"{tag}.json")
        for tag, folder in resumes.items()
    }
    outputs = {tag: finish(p) for tag, p in procs.items()}
    assert "resumed from" in outputs["w0"]

    expected = json.loads((tmp_path / "reference.json").read_text())
    assert expected["train"]["global_step"] == sc["total_steps"]
    for tag, folder in resumes.items():
        assert json.loads((tmp_path / f"{tag}.json").read_text()) == expected, tag
        assert_same_run(ref, folder)


def _fail(proc) -> str:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode not in (0, None), out[-3000:]
    return out


def test_the_divergence_advice_resumes_from_the_stable_checkpoint_at_the_new_lr(tmp_path):
    """A warm-up towards init_lr=1000 blows up; the error names checkpoint_last_stable.pth and the
    exact --options to continue from it with a lower LR; running them trains at that LR."""
    from lavis.common.logger import read_metrics
    from lavis.common.optim import LinearWarmupCosineLR

    cfg = write_config(tmp_path / "toy.yaml", runner="runner_epoch", max_epoch=3, batch_size_train=8, init_lr=1e3, warmup_lr=1e-3,
                       warmup_steps=10, save_every_iters=2, valid_splits=[], test_splits=[])
    first = [f"run.output_dir={tmp_path / 'run'}"]
    out = _fail(start(cfg, first))
    found = re.search(r"Resume from it with a lower learning rate: --options (run.resume_ckpt_path=\S+) "
                      r"(run.init_lr=\S+) \(add the options of the failed command\)", out)
    assert found, out[-3000:]
    resume_opt, lr_opt = found.groups()
    assert resume_opt == f"run.resume_ckpt_path={tmp_path / 'run' / 'checkpoint_last_stable.pth'}"
    assert lr_opt == "run.init_lr=100"
    stable_step = safe_torch_load(tmp_path / "run" / "checkpoint_last_stable.pth")["state"]["global_step"]

    again = finish(start(cfg, first + [resume_opt, lr_opt], result=tmp_path / "r.json"))
    assert "run.init_lr: 1000.0 -> 100.0 (using new)" in again
    train = {e["step"]: e["values"] for e in read_metrics(tmp_path / "run") if e["split"] == "train"}
    assert sorted(train) == list(range(1, 37))  # the steps after the stable checkpoint were run again
    new = LinearWarmupCosineLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0), init_lr=100.0,
                               warmup_lr=1e-3, warmup_steps=10, min_lr=1e-4, total_steps=36, steps_per_epoch=12)
    for step in range(stable_step + 1, 37):  # the LR the optimizer used at each step after the resume
        assert train[step]["lr"] == pytest.approx(new.lr_at(step - 1), rel=1e-6), step
    assert json.loads((tmp_path / "r.json").read_text())["train"]["global_step"] == 36


def test_the_restart_advice_after_an_early_blow_up_runs(tmp_path):
    """When every checkpoint was written after the loss rose, the error advises starting again with
    a lower init_lr; that command runs to the end at that LR."""
    from lavis.common.logger import read_metrics

    cfg = write_config(tmp_path / "toy.yaml", runner="runner_epoch", max_epoch=3, batch_size_train=8, init_lr=1e3, warmup_steps=0,
                       lr_sched="constant_lr", save_every_iters=2, valid_splits=[], test_splits=[])
    out = _fail(start(cfg, [f"run.output_dir={tmp_path / 'a'}"]))
    found = re.search(r"may hold diverged weights. Start again with a lower learning rate: --options (run.init_lr=\S+) ",
                      out)
    assert found, out[-3000:]
    assert not (tmp_path / "a" / "checkpoint_last_stable.pth").exists()
    finish(start(cfg, [f"run.output_dir={tmp_path / 'b'}", found.group(1)], result=tmp_path / "r.json"))
    train = [e["values"] for e in read_metrics(tmp_path / "b") if e["split"] == "train"]
    assert len(train) == 36 and all(v["lr"] == 100.0 for v in train)
    assert all(isinstance(v["loss"], float) for v in train)  # finite (non-finite values are logged as strings)
