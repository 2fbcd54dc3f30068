"""Under DDP (torchrun, 2 CPU processes) a NaN loss on one rank skips the step on both ranks, whose
weights stay identical, and the scalar extras are averaged over ranks."""

from __future__ import annotations

import json

import pytest

from lavis.common.checkpoint import safe_torch_load
from lavis.common.logger import read_metrics
from tests.toy.cli import finish, start, write_config

pytestmark = pytest.mark.dist  # several processes with torchrun


def test_a_nan_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    cfg = write_config(tmp_path / "toy.yaml", runner="runner_epoch", max_epoch=1, toy_n_train=96, batch_size_train=8,
                       toy_nan_at_call=3, toy_nan_rank=1, skip_nonfinite_steps=1, check_replicas_every=1,
                       toy_log_rank=True, valid_splits=[], test_splits=[])
    out = finish(start(cfg, [f"run.output_dir={tmp_path / 'run'}"], result=tmp_path / "r.json", nproc=2), timeout=240)
    result = json.loads((tmp_path / "r.json").read_text())
    for rank in (0, 1):  # only rank 1 saw the NaN; both skip
        assert out.count(f"[rank{rank}] WARNING lavis.runners: skipped optimizer step 3: non-finite loss (nan)") == 1
    events = read_metrics(tmp_path / "run")
    skipped = [e for e in events if e["split"] == "train/skipped"]
    assert [(e["step"], e["values"]["skipped_steps"]) for e in skipped] == [(3, 1)]
    train = [e for e in events if e["split"] == "train"]
    assert result["train"]["global_step"] == len(train) == 5  # 6 micro-batches per rank, one step skipped
    assert result["train"]["replica_checks"] == 5  # the ranks hold identical weights after every step
    assert all(e["values"]["toy_rank"] == 0.5 for e in train)  # (0 + 1) / 2
    ckpt = safe_torch_load(tmp_path / "run" / "checkpoint_latest.pth")
    assert ckpt["state"]["skipped_steps"] == 1
