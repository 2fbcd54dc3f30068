"""CUDA smoke tests: skipped without a GPU (``gpu`` marker). They run the paths a CPU cannot: fp16
autocast with a GradScaler in the runner, the fused AdamW kernel and an NCCL process group."""

from __future__ import annotations

import math
import socket

import pytest
import torch

pytestmark = pytest.mark.gpu


def test_runner_trains_in_fp16_with_a_grad_scaler_and_fused_adamw(tmp_path):
    from lavis.common.logger import read_metrics
    from lavis.runners.runner_epoch import RunnerEpoch
    from tests.toy.components import build_runner

    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), device="cuda", amp="fp16", max_epoch=2)
    assert runner.scaler is not None, "fp16 must train with a GradScaler"
    assert runner.optimizer.defaults.get("fused") is True, "AdamW on CUDA must use the fused kernel"
    result = runner.train()
    losses = [e["values"]["loss"] for e in read_metrics(tmp_path) if e["split"] == "train"]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert result["test"]["toy/test"]["accuracy"] > 50
    assert next(runner.model.parameters()).dtype == torch.float32  # fp32 master weights


def test_tiny_blip_caption_fp16_step_and_generate():
    from lavis.models import load_model

    model = load_model("blip_caption", "tiny", device="cuda")
    scaler = torch.amp.GradScaler("cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    samples = {"image": torch.randn(2, 3, 64, 64, device="cuda"),
               "text_input": ["a picture of a red circle", "a picture of a blue square"]}
    with torch.autocast("cuda", dtype=torch.float16):
        loss = model(samples).loss
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert torch.isfinite(loss)
    model.eval()
    captions = model.generate({"image": samples["image"]}, max_length=10, min_length=3)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)


def test_nccl_all_reduce_in_a_one_process_group():
    import torch.distributed as dist

    if not dist.is_nccl_available():
        pytest.skip("this torch build has no NCCL")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        t = torch.arange(4, dtype=torch.float32, device="cuda")
        dist.all_reduce(t)
        assert t.tolist() == [0.0, 1.0, 2.0, 3.0]
    finally:
        dist.destroy_process_group()
