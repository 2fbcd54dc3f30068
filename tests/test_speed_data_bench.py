"""The data benchmark of benchmarks/speed.py: its timing gives every pass the same work, and our
worker runs the training processor on every item (the LAVIS side needs LAVIS' environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import speed_harness as H  # noqa: E402


def test_time_items_seeds_each_item_so_every_pass_draws_the_same() -> None:
    draws: dict[int, list[float]] = {}
    seconds = H.time_items(lambda k: draws.setdefault(k, []).append(torch.rand(()).item()), 5, repeats=3)
    assert sorted(draws) == list(range(5)) and all(len(d) == 4 for d in draws.values())  # a warm-up + 3 passes
    assert all(len(set(d)) == 1 for d in draws.values())  # item k draws the same numbers in every pass
    assert len({d[0] for d in draws.values()}) == 5  # and other numbers than item j
    assert set(seconds) == {"times", "cpu_times"}
    assert all(len(v) == 1 and 0 <= v[0] < 1 for v in seconds.values())


def test_our_data_worker_processes_every_item(tmp_path: Path) -> None:
    H.make_jpegs(tmp_path, n=3, size=(64, 48))
    assert len(H.data_items(tmp_path)) == 12  # each JPEG 4 times
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed_ours.py"), "--bench", "data", "--repeats", "1",
                          "--threads", "1", "--vocab", str(ROOT / "lavis/assets/tokenizers/tiny"), "--images", str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    assert result["images"] == 12 and len(result["times"]) == 1 and result["times"][0] > 0
