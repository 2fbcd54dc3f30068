"""The tiny Qwen2-VL trained on shapes questions (the SFT demo, about 5 minutes on 2 CPU cores)
keeps at least 95% of its test answer accuracy at W8A16 and at W4A16 (GPTQ and AWQ, groups of 32)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.parametrize("settings", [
    ["quantization.method=rtn", "quantization.scheme=w8a16", "quantization.group_size=0"],
    ["quantization.method=gptq", "quantization.scheme=w4a16", "quantization.group_size=32"],
    ["quantization.method=awq", "quantization.scheme=w4a16", "quantization.group_size=32"],
])
def test_the_trained_tiny_vlm_keeps_95_percent_of_its_accuracy(settings, trained_sft, tmp_path):
    from lavis.quantization.cli import quantize_main

    report = quantize_main(["--cfg-path", str(ROOT / "configs/demo/quantize_shapes.yaml"), "--options",
                            f"model.finetuned={trained_sft}", f"run.output_dir={tmp_path}",
                            "quantization.speed_samples=0", *settings])
    before = report["float"]["scores"]["shapes_vqa_chat/test"]["answer_accuracy"]
    after = report["quantized"]["scores"]["shapes_vqa_chat/test"]["answer_accuracy"]
    assert before > 0.4  # the model did learn (chance is about 0.27)
    assert after >= 0.95 * before, (before, after)


@pytest.fixture(scope="module")
def trained_sft(tmp_path_factory) -> Path:
    from lavis.cli import train_main

    out = tmp_path_factory.mktemp("sft")
    # the four VQA types for 3 epochs: the shipped config adds grounding and trains 8 (4.4 min)
    train_main(["--cfg-path", str(ROOT / "configs/demo/sft_shapes.yaml"), "--options", f"run.output_dir={out}",
                "run.progress_bar=false", "run.tensorboard=false", "run.max_epoch=3", "run.max_new_tokens=4",
                "datasets.shapes_vqa_chat.build_info.question_types=[]"])
    return out / "checkpoint_best.pth"
