"""The shipped post-training demo chain (configs/demo/sft_shapes.yaml -> dpo_shapes.yaml ->
grpo_shapes.yaml) runs end to end on a few images: each stage loads the previous stage's best
checkpoint, grounding questions flow through every stage and GRPO is rewarded by IoU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lavis.common.config import Config
from lavis.rewards.iou import iou_reward
from lavis.tasks import setup_task

ROOT = Path(__file__).resolve().parents[1]


def _stage(config: str, dataset: str, out: Path, storage: Path, *extra: str) -> dict:
    from lavis.cli import train_main

    info = f"datasets.{dataset}.build_info"
    train_main(["--cfg-path", str(ROOT / "configs/demo" / config), "--options", f"run.output_dir={out}",
                f"{info}.storage={storage}", f"{info}.generator.num_train=4", f"{info}.generator.num_val=2",
                f"{info}.generator.num_test=2", "run.max_epoch=1", "run.batch_size_train=4", "run.warmup_steps=1",
                "run.progress_bar=false", "run.tensorboard=false", *extra])
    assert (out / "checkpoint_best.pth").is_file()
    return json.loads((out / "result" / "test_epochbest.json").read_text())


def test_sft_dpo_grpo_chain_runs_with_grounding(tmp_path):
    storage = tmp_path / "shapes"
    sft = _stage("sft_shapes.yaml", "shapes_vqa_chat", tmp_path / "sft", storage)
    assert {r["question_type"] for r in sft["results"]} == {"count", "color", "shape", "exists", "locate"}
    assert "mean_iou" in sft["metrics"] and "accuracy/locate" in sft["metrics"]
    dpo = _stage("dpo_shapes.yaml", "shapes_vqa_preference", tmp_path / "dpo", storage,
                 f"model.finetuned={tmp_path / 'sft' / 'checkpoint_best.pth'}")
    assert "preference_accuracy/locate" in dpo["metrics"]
    grpo = _stage("grpo_shapes.yaml", "shapes_vqa_grpo", tmp_path / "grpo", storage,
                  f"model.finetuned={tmp_path / 'dpo' / 'checkpoint_best.pth'}", "run.num_generations=2",
                  "run.eval_samples=2")
    results = grpo["results"]
    assert len(results) == 2 and {r["question_type"] for r in results} == {"locate"}
    for r in results:  # the reward of a prompt is the mean IoU of its sampled boxes
        assert len(r["sampled"]) == 2 and 0.0 <= r["iou"] <= 1.0
        assert r["reward"] == pytest.approx(sum(iou_reward(r["sampled"], [r["reference"]] * 2)) / 2)
    assert grpo["metrics"]["agg_metrics"] == grpo["metrics"]["mean_reward"]
    # an untrained model's boxes all miss, so check the shipped task's reward on known boxes too
    task = setup_task(Config.from_file(ROOT / "configs/demo/grpo_shapes.yaml"))
    got = task.rewards_of(["[ 0 , 0 , 10 , 5 ]", "red", "[0, 0, 10, 10]"], {"solution": ["[0, 0, 10, 10]"] * 3})
    assert got == pytest.approx([0.5, 0.0, 1.0])
