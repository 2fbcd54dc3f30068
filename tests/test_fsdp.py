"""FSDP (``run.distributed_strategy=fsdp``, torch's ``fully_shard``) with ``torchrun --nproc_per_node 2``
(gloo, CPU) on the toy task, with gradient accumulation and gradient-norm clipping:

- the losses, weights and optimizer moments match a DDP run of the same config to float
  tolerance (both average the two ranks' gradients; the reductions round differently);
- resuming the FSDP run from its epoch-0 checkpoint ends with the weights, optimizer state and
  logged metrics of the uninterrupted FSDP run, bit for bit; so does an FSDP run SIGKILLed
  mid-epoch (after an iteration checkpoint) and resumed under FSDP;
- its checkpoints hold full state dicts in the DDP layout: they load in a single process;
- a model with an ``nn.ModuleList`` gets one group per block and matches one process (tests/toy/fsdp_blocks.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lavis.common.checkpoint import safe_torch_load  # noqa: E402
from tests.toy.cli import assert_same_run, events, finish, kill_mid_epoch, start, write_config  # noqa: E402

pytestmark = pytest.mark.dist

# 64 items / (2 ranks x 8) = 4 micro-batches per rank and epoch, 2 optimizer steps (accumulation 2)
RUN = {"runner": "runner_epoch", "max_epoch": 3, "toy_n_train": 64, "toy_n_valid": 33, "toy_n_test": 31,
       "toy_dropout": 0.1, "batch_size_train": 8, "batch_size_eval": 4, "accum_grad_iters": 2, "max_grad_norm": 0.5}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    cfg = write_config(tmp / "toy.yaml", **RUN)
    procs = {name: start(cfg, [f"run.output_dir={tmp / name}", f"run.distributed_strategy={name}"],
                         result=tmp / f"{name}.json", nproc=2) for name in ("ddp", "fsdp")}
    outs = {name: finish(p, timeout=120) for name, p in procs.items()}
    resumed = start(cfg, [f"run.output_dir={tmp / 'resumed'}", "run.distributed_strategy=fsdp",
                          f"run.resume_ckpt_path={tmp / 'fsdp' / 'checkpoint_0.pth'}"],
                    result=tmp / "resumed.json", nproc=2)
    outs["resumed"] = finish(resumed, timeout=120)
    return tmp, outs


def test_fsdp_matches_ddp(runs):
    tmp, outs = runs
    assert "FSDP: fully_shard over 2 ranks" in outs["fsdp"] and "FSDP" not in outs["ddp"]
    a = safe_torch_load(tmp / "ddp" / "checkpoint_latest.pth")
    b = safe_torch_load(tmp / "fsdp" / "checkpoint_latest.pth")
    assert a["state"]["global_step"] == b["state"]["global_step"] == 6
    assert a["model"].keys() == b["model"].keys()
    for key, t in a["model"].items():
        assert not hasattr(b["model"][key], "placements"), f"{key} is saved sharded"
        torch.testing.assert_close(b["model"][key], t, rtol=1e-4, atol=1e-5, msg=key)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for pid, sa in a["optimizer"]["state"].items():
        for name, t in sa.items():
            torch.testing.assert_close(b["optimizer"]["state"][pid][name], t, rtol=1e-4, atol=1e-6, msg=f"{pid}.{name}")
    la, lb = ([e[3] for e in events(tmp / n) if e[0] == "train"] for n in ("ddp", "fsdp"))
    assert len(la) == len(lb) == 6
    assert [e["loss"] for e in lb] == pytest.approx([e["loss"] for e in la], rel=1e-5)
    assert [e["grad_norm"] for e in lb] == pytest.approx([e["grad_norm"] for e in la], rel=1e-4)
    assert max(e["grad_norm"] for e in la) > RUN["max_grad_norm"]  # clipping took effect
    ra, rb = (json.loads((tmp / f"{n}.json").read_text()) for n in ("ddp", "fsdp"))
    assert rb["valid"]["toy/val"]["n"] == 33 and rb["test"]["toy/test"]["n"] == 31
    assert abs(ra["test"]["toy/test"]["accuracy"] - rb["test"]["toy/test"]["accuracy"]) <= 100 / 31 + 1e-9


def test_fsdp_resume_from_an_epoch_checkpoint_is_exact(runs):
    tmp, outs = runs
    assert "resumed from" in outs["resumed"]
    a = safe_torch_load(tmp / "fsdp" / "checkpoint_latest.pth")
    b = safe_torch_load(tmp / "resumed" / "checkpoint_latest.pth")
    assert a["state"] == b["state"]
    for key, t in a["model"].items():
        assert torch.equal(t, b["model"][key]), f"weights differ: {key}"
    for pid, sa in a["optimizer"]["state"].items():
        for name, t in sa.items():
            assert torch.equal(t, b["optimizer"]["state"][pid][name]), f"optimizer state differs: {pid}.{name}"
    tail = [e for e in events(tmp / "fsdp") if e[1] != 0]  # after epoch 0: epochs 1 and 2, then the test
    assert events(tmp / "resumed") == tail and len(tail) > 4
    assert json.loads((tmp / "resumed.json").read_text())["train"]["global_step"] == 6


def test_fsdp_sigkill_mid_epoch_and_resume_is_exact(tmp_path):
    """Both ranks (torchrun and its workers) are SIGKILLed after an iteration checkpoint in the
    middle of epoch 1; resuming under FSDP ends where the uninterrupted FSDP run ends, bit for bit."""
    # 128 items / (2 ranks x 8) = 8 micro-batches per rank and epoch: 4 optimizer steps per epoch, 12 in all
    run = {**RUN, "toy_n_train": 128, "save_every_iters": 1, "distributed_strategy": "fsdp"}
    cfg = write_config(tmp_path / "toy.yaml", **run)
    ref, killed = tmp_path / "reference", tmp_path / "killed"
    reference = start(cfg, [f"run.output_dir={ref}"], result=tmp_path / "reference.json", nproc=2)
    victim = start(cfg, [f"run.output_dir={killed}", "run.toy_step_delay=0.1"], nproc=2)
    at_kill = kill_mid_epoch(victim, killed, after_step=5, timeout=120)
    finish(reference, timeout=120)
    assert 5 <= at_kill["global_step"] <= 8 and at_kill["epoch"] == 1  # in epoch 1, before its end
    time.sleep(1.0)  # the workers are gone: nothing more is written
    assert safe_torch_load(killed / "checkpoint_latest.pth")["state"] == at_kill
    assert "toy/test" not in (killed / "metrics.jsonl").read_text()

    out = finish(start(cfg, [f"run.output_dir={killed}", f"run.resume_ckpt_path={killed / 'checkpoint_latest.pth'}"],
                       result=tmp_path / "resumed.json", nproc=2), timeout=120)
    assert "resumed from" in out and "FSDP: fully_shard over 2 ranks" in out
    expected = json.loads((tmp_path / "reference.json").read_text())
    assert expected["train"]["global_step"] == 12
    assert json.loads((tmp_path / "resumed.json").read_text()) == expected
    assert_same_run(ref, killed)


def test_an_fsdp_checkpoint_loads_in_one_process(runs):
    from lavis.common.optim import build_optimizer
    from lavis.runners.checkpointing import load_model_weights
    from tests.toy.components import ToyClassifier, make_config

    tmp, _ = runs
    path = tmp / "fsdp" / "checkpoint_latest.pth"
    model = ToyClassifier(dropout=0.0)
    assert load_model_weights(model, path)["global_step"] == 6
    optimizer = build_optimizer(model, make_config(**RUN).run)
    optimizer.load_state_dict(safe_torch_load(path)["optimizer"])
    assert all(optimizer.state[p]["exp_avg"].shape == p.shape for p in model.parameters())


def test_blocks_of_a_module_list_are_sharded_and_match_one_process():
    """``tests/toy/fsdp_blocks.py``: per-block groups, no-sync accumulation, norm and clipping of
    the sharded gradients against one process, evaluation on gathered weights with uneven calls."""
    import subprocess

    from tests.toy.cli import ROOT, env

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           str(ROOT / "tests" / "toy" / "fsdp_blocks.py")]
    proc = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stdout.count("fsdp blocks ok") == 2
