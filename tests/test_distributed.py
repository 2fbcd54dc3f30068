"""DDP with ``torchrun --nproc_per_node 2`` (gloo, CPU) on the toy task.

- with ``run.check_replicas_every=1`` the ranks hold bit-identical weights after every step
  (the checker's detection of a perturbed rank is unit-tested in tests/unit/runners/test_support.py);
- evaluation gives every held-out sample to exactly one rank (odd-sized splits; the per-rank id
  lists are recorded by the toy task before de-duplication);
- the final weights match a single-process run with the same global batch to float tolerance
  (not bitwise: DDP averages two half-batch gradients, one process averages one full batch, and
  the rounding differs in the last bits).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lavis.common.checkpoint import safe_torch_load  # noqa: E402
from tests.toy.cli import events, finish, start, write_config  # noqa: E402

pytestmark = pytest.mark.dist

RUN = {"runner": "runner_epoch", "max_epoch": 2, "toy_n_train": 96, "toy_n_valid": 33, "toy_n_test": 31,
       "toy_dropout": 0.0, "toy_record_eval_ids": True, "check_replicas_every": 1, "save_every_iters": 4}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    cfg = write_config(tmp / "toy.yaml", **RUN)
    ddp = start(cfg, [f"run.output_dir={tmp / 'ddp'}", "run.batch_size_train=8"], result=tmp / "ddp.json", nproc=2)
    single = start(cfg, [f"run.output_dir={tmp / 'single'}", "run.batch_size_train=16"], result=tmp / "single.json")
    out = finish(ddp, timeout=240)
    finish(single, timeout=240)
    return tmp, out


def test_replicas_stay_identical_at_every_step(runs):
    tmp, out = runs
    result = json.loads((tmp / "ddp.json").read_text())
    assert result["train"]["global_step"] == 12  # 96 items / (2 ranks x 8) per step x 2 epochs
    assert result["train"]["replica_checks"] == 12
    assert "2 rank(s)" in out


def test_every_held_out_sample_is_evaluated_exactly_once(runs):
    tmp, _ = runs
    rounds = sorted((tmp / "ddp").glob("eval_ids_*.json"))
    assert len(rounds) == 3  # val after each epoch, then test
    for path, n in zip(rounds, (33, 33, 31)):
        per_rank = json.loads(path.read_text())
        assert len(per_rank) == 2
        assert sorted(len(ids) for ids in per_rank) == [n // 2, n // 2 + 1]  # uneven shares, no padding
        assert sorted(per_rank[0] + per_rank[1]) == list(range(n))
    result = json.loads((tmp / "ddp.json").read_text())
    assert result["valid"]["toy/val"]["n"] == 33 and result["test"]["toy/test"]["n"] == 31


def test_ddp_matches_one_process_with_the_same_global_batch(runs):
    tmp, _ = runs
    a = safe_torch_load(tmp / "ddp" / "checkpoint_latest.pth")
    b = safe_torch_load(tmp / "single" / "checkpoint_latest.pth")
    assert a["world_size"] == 2 and len(a["rng"]) == 2 and b["world_size"] == 1
    for key, t in a["model"].items():
        torch.testing.assert_close(t, b["model"][key], rtol=1e-4, atol=1e-5, msg=key)
    la = [e[3]["loss"] for e in events(tmp / "ddp") if e[0] == "train"]
    lb = [e[3]["loss"] for e in events(tmp / "single") if e[0] == "train"]
    assert len(la) == len(lb) == 12
    assert la == pytest.approx(lb, rel=1e-4)  # the logged loss is the mean over both ranks
    ra, rb = (json.loads((tmp / f"{n}.json").read_text()) for n in ("ddp", "single"))
    assert abs(ra["test"]["toy/test"]["accuracy"] - rb["test"]["toy/test"]["accuracy"]) <= 100 / 31 + 1e-9
