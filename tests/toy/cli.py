"""Helpers for the CLI-level tests: write a toy config, start ``launch.py`` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch

from lavis.common.checkpoint import safe_torch_load
from lavis.common.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "tests" / "toy" / "launch.py"
TIMING_KEYS = ("samples_per_s", "s_per_step")


def write_config(path: Path, **run: Any) -> Path:
    """A toy experiment config (JSON is YAML) with the given run keys."""
    run = {"task": "toy_task", "device": "cpu", "amp": "none", "progress_bar": False, "tensorboard": False, "log_freq": 1,
           "init_lr": 1e-2, "warmup_steps": 2, "warmup_lr": 1e-3, "min_lr": 1e-4, "weight_decay": 0.01,
           "valid_splits": ["val"], "test_splits": ["test"], **run}
    path.write_text(json.dumps({"run": run}, indent=1))
    return path


def env(result: Path | None = None) -> dict[str, str]:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if result is not None:
        e["LAVIS_TOY_RESULT"] = str(result)
    return e


def start(
    cfg: Path, options: Sequence[str], result: Path | None = None, nproc: int = 1, script: Path = LAUNCH
) -> subprocess.Popen:
    """``script --cfg-path cfg --options ...`` (under torchrun with ``nproc`` > 1); ``script`` is the
    toy launcher by default, ``train.py`` for the real stack."""
    prefix = [sys.executable]
    if nproc > 1:
        prefix += ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", str(nproc)]
    cmd = prefix + [str(script), "--cfg-path", str(cfg), "--options", *options]
    return subprocess.Popen(cmd, env=env(result), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    """Wait for ``proc``; its output, or an assertion error with it when it failed."""
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit status {proc.returncode}:\n{out[-6000:]}"
    return out


def events(folder: Path) -> list[tuple]:
    """Logged events without wall-clock values: (split, epoch, step, values)."""
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        e = json.loads(line)
        out.append((e["split"], e["epoch"], e["step"], {k: v for k, v in e["values"].items() if k not in TIMING_KEYS}))
    return out


def read_latest(folder: Path):
    try:
        return safe_torch_load(folder / "checkpoint_latest.pth")
    except CheckpointError:  # not written yet
        return None


def descendants(pid: int) -> list[int]:
    """Process ids of every live descendant of ``pid`` (from ``/proc``; Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        out.append(todo.pop())
        todo += children.get(out[-1], [])
    return out


def kill_mid_epoch(proc, folder: Path, after_step: int, timeout: float = 90.0) -> dict:
    """SIGKILL ``proc`` and its descendants (torchrun's workers, which run in sessions of their
    own) once its latest checkpoint is a mid-epoch one past ``after_step``."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read()[-4000:]
            pytest.fail(f"the run ended (status {proc.returncode}) before it could be killed:\n{out}")
        ckpt = read_latest(folder)
        if ckpt is not None and not ckpt["state"]["epoch_done"] and ckpt["state"]["global_step"] >= after_step:
            break
        assert time.monotonic() < deadline, "no mid-epoch checkpoint appeared in time"
        time.sleep(0.01)
    tree = descendants(proc.pid)
    for pid in [proc.pid, *tree]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return ckpt["state"]


def assert_same_run(a: Path, b: Path) -> None:
    ca, cb = safe_torch_load(a / "checkpoint_latest.pth"), safe_torch_load(b / "checkpoint_latest.pth")
    assert ca["state"] == cb["state"]
    assert ca["model"].keys() == cb["model"].keys()
    for key in ca["model"]:
        assert torch.equal(ca["model"][key], cb["model"][key]), f"weights differ: {key}"
    for pid, sa in ca["optimizer"]["state"].items():
        for name, t in sa.items():
            assert torch.equal(t, cb["optimizer"]["state"][pid][name]), f"optimizer state differs: {pid}.{name}"
    best_a, best_b = (safe_torch_load(f / "checkpoint_best.pth")["model"] for f in (a, b))
    assert all(torch.equal(t, best_b[k]) for k, t in best_a.items())
    assert events(a) == events(b)
