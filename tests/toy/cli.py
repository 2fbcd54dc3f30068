"""Helpers for the CLI-level tests: write a toy config, start ``launch.py`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "tests" / "toy" / "launch.py"
TIMING_KEYS = ("samples_per_s", "s_per_step")


def write_config(path: Path, **run: Any) -> Path:
    """A toy experiment config (JSON is YAML) with the given run keys."""
    run = {"task": "toy_task", "device": "cpu", "progress_bar": False, "tensorboard": False, "log_freq": 1,
           "init_lr": 1e-2, "warmup_steps": 2, "warmup_lr": 1e-3, "min_lr": 1e-4, "weight_decay": 0.01,
           "valid_splits": ["val"], "test_splits": ["test"], **run}
    path.write_text(json.dumps({"run": run}, indent=1))
    return path


def env(result: Path | None = None) -> dict[str, str]:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if result is not None:
        e["LAVIS_TOY_RESULT"] = str(result)
    return e


def start(cfg: Path, options: Sequence[str], result: Path | None = None, nproc: int = 1) -> subprocess.Popen:
    """``launch.py --cfg-path cfg --options ...`` (under torchrun with ``nproc`` > 1)."""
    prefix = [sys.executable]
    if nproc > 1:
        prefix += ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", str(nproc)]
    cmd = prefix + [str(LAUNCH), "--cfg-path", str(cfg), "--options", *options]
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
