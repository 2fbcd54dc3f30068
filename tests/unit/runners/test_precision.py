"""What run.amp means per device, and that a bf16-autocast run on CPU really runs in bf16 and learns."""

import pytest
import torch

from lavis.common.errors import ConfigError
from lavis.common.logger import read_metrics
from lavis.runners.precision import cpu_supports_bf16, resolve_precision
from lavis.runners.runner_epoch import RunnerEpoch
from tests.toy.components import build_runner

CPU = torch.device("cpu")


def test_resolve_precision_on_cpu():
    assert resolve_precision("none", CPU).dtype is None
    assert resolve_precision("bf16", CPU).dtype == torch.bfloat16
    assert resolve_precision("auto", CPU).dtype == (torch.bfloat16 if cpu_supports_bf16() else None)
    assert not resolve_precision("bf16", CPU).needs_scaler
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ConfigError, match="not one of none, auto, bf16, fp16"):
        resolve_precision("fp8", CPU)


def test_autocast_context_computes_matmuls_in_bf16():
    x = torch.randn(4, 8)
    w = torch.randn(8, 8)
    with resolve_precision("bf16", CPU).autocast():
        assert (x @ w).dtype == torch.bfloat16
    with resolve_precision("none", CPU).autocast():
        assert (x @ w).dtype == torch.float32


def test_bf16_run_learns_and_keeps_fp32_weights(tmp_path):
    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=4, amp="bf16")
    before = runner.evaluate()["toy/test"]["accuracy"]
    seen = set()
    linear = next(m for m in runner.model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda mod, inp, out: seen.add((mod.training, out.dtype)))
    result = runner.train()
    assert (True, torch.bfloat16) in seen  # training steps ran under bf16 autocast
    losses = [e["values"]["loss"] for e in read_metrics(tmp_path) if e["split"] == "train"]
    assert result["train"]["loss"] < 0.5 * losses[0]
    assert result["test"]["toy/test"]["accuracy"] >= before + 25
    assert all(p.dtype == torch.float32 for p in runner.model.parameters())  # master weights stay fp32


def _train_tiny_captioner(amp: str, steps: int) -> tuple[list[float], torch.nn.Module]:
    from lavis.common.optim import build_optimizer
    from lavis.common.run_schema import RunConfig
    from lavis.models.blip.blip_caption import BlipCaption

    torch.manual_seed(0)
    model = BlipCaption.from_pretrained("tiny").train()
    opt = build_optimizer(model, RunConfig(task="captioning", init_lr=1e-3))
    precision = resolve_precision(amp, CPU)
    g = torch.Generator().manual_seed(1)
    words = ["red", "green", "blue", "circle", "square", "star", "small", "large"]
    samples = {"image": torch.randn(8, 3, 64, 64, generator=g),
               "text_input": [f"a picture of a {words[i % 3]} {words[3 + i % 3]}" for i in range(8)]}
    losses = []
    for _ in range(steps):
        with precision.autocast():
            loss = model(samples).loss
        loss.float().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, model


@pytest.mark.usefixtures("one_thread")
def test_bf16_training_of_the_tiny_captioner_learns_like_fp32():
    """bf16 autocast with fp32 master weights: the loss falls, stays finite and follows the fp32 curve."""
    bf16, model = _train_tiny_captioner("bf16", 30)
    fp32, _ = _train_tiny_captioner("none", 30)
    assert all(torch.isfinite(torch.tensor(bf16)))
    assert bf16[-1] < 0.5 * bf16[0] and fp32[-1] < 0.5 * fp32[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    gaps = [abs(b - f) / f for b, f in zip(bf16, fp32)]
    assert max(gaps[:10]) < 0.02  # the first steps agree closely
    assert abs(bf16[-1] - fp32[-1]) / fp32[-1] < 0.03, (bf16[-1], fp32[-1])


def test_amp_defaults_to_auto():
    from lavis.common.run_schema import RunConfig

    assert RunConfig(task="captioning").amp == "auto"
