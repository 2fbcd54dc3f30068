"""Trained-only checkpoints of an FSDP-sharded model (``tests/toy/fsdp_trained_only.py`` under
``torchrun --nproc_per_node 2``, gloo)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.toy.cli import ROOT, env  # noqa: E402

pytestmark = pytest.mark.dist


def test_trained_only_weights_of_a_sharded_model_check_the_base_on_every_rank():
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           str(ROOT / "tests" / "toy" / "fsdp_trained_only.py")]
    proc = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert proc.stdout.count("fsdp trained-only ok") == 2
