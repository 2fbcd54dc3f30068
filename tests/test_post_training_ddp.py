"""DPO with LoRA under DDP (``torchrun --nproc_per_node 2``, gloo on CPU) on the tiny Qwen2-VL: the
ranks hold identical weights after every step (``run.check_replicas_every=1``: the run fails
otherwise), and the adapters end where one process with the same global batch puts them, to float
tolerance (two half-batch gradients averaged vs one full batch round differently)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lavis.common.checkpoint import safe_torch_load  # noqa: E402
from tests.toy.cli import ROOT, finish, start  # noqa: E402

pytestmark = pytest.mark.dist


def test_dpo_with_lora_under_ddp_matches_one_process(tmp_path):
    cfg = {"model": {"arch": "qwen2_vl", "model_type": "tiny", "lora": {"r": 4, "alpha": 8, "target_modules": "auto"}},
           "datasets": {"shapes_vqa_preference": {"build_info": {
               "storage": str(tmp_path / "shapes"),
               "generator": {"seed": 0, "image_size": 32, "num_train": 4, "num_val": 2, "num_test": 2}}}},
           "run": {"task": "dpo", "beta": 0.1, "device": "cpu", "amp": "none", "num_workers": 0, "max_epoch": 1, "init_lr": 1e-3,
                   "warmup_steps": 0, "valid_splits": [], "test_splits": [], "progress_bar": False,
                   "tensorboard": False, "check_replicas_every": 1}}
    path = tmp_path / "dpo.yaml"
    path.write_text(json.dumps(cfg))
    train = ROOT / "train.py"
    ddp = start(path, [f"run.output_dir={tmp_path / 'ddp'}", "run.batch_size_train=2"], nproc=2, script=train)
    out = finish(ddp, timeout=400)
    single = start(path, [f"run.output_dir={tmp_path / 'single'}", "run.batch_size_train=4"], script=train)
    finish(single, timeout=400)
    assert "2 rank(s)" in out
    a = safe_torch_load(tmp_path / "ddp" / "checkpoint_latest.pth")
    b = safe_torch_load(tmp_path / "single" / "checkpoint_latest.pth")
    assert a["state"]["global_step"] == b["state"]["global_step"] > 1
    lora = [k for k in a["model"] if "lora_B" in k]
    assert lora and any(a["model"][k].abs().sum() > 0 for k in lora)  # lora_B starts at zero: they trained
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=2e-5, rtol=1e-4, msg=k)


def test_ppo_with_several_updates_per_rollout_keeps_the_ranks_in_step(tmp_path):
    """Each rank samples its own rollouts; both take the same two-epoch, two-mini-batch updates on
    them, with gradients averaged, so the replicas stay identical (checked after every step)."""
    cfg = {"model": {"arch": "qwen2_vl", "model_type": "tiny", "value_head": True},
           "datasets": {"shapes_vqa_grpo": {"build_info": {
               "storage": str(tmp_path / "shapes"),
               "generator": {"seed": 0, "image_size": 32, "num_train": 4, "num_val": 2, "num_test": 2}}}},
           "run": {"task": "ppo", "rewards": ["answer_accuracy"], "ppo_epochs": 2, "num_mini_batches": 2,
                   "max_new_tokens": 3, "device": "cpu", "amp": "none", "num_workers": 0, "max_epoch": 1,
                   "init_lr": 1e-3, "warmup_steps": 0, "batch_size_train": 4, "valid_splits": [], "test_splits": [],
                   "progress_bar": False, "tensorboard": False, "check_replicas_every": 1}}
    path = tmp_path / "ppo.yaml"
    path.write_text(json.dumps(cfg))
    out = finish(start(path, [f"run.output_dir={tmp_path / 'ddp'}"], nproc=2, script=ROOT / "train.py"), timeout=400)
    assert "2 rank(s)" in out
    ckpt = safe_torch_load(tmp_path / "ddp" / "checkpoint_latest.pth")
    # 16 prompts, 8 per rank in batches of 4: two batches, four steps on each
    assert ckpt["state"]["global_step"] == 8 and ckpt["state"]["replica_checks"] == 8
