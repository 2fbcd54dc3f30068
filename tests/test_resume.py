"""Exact resume after SIGKILL: a run killed mid-epoch and resumed with ``run.resume_ckpt_path``
ends with bit-identical weights, optimizer state and metrics to an uninterrupted run, for both
runners; resuming with 2 data-loader workers instead of 0 changes nothing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

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
