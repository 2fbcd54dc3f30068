"""Post-training runs resume exactly: SFT (all weights), DPO with LoRA adapters (the reference
is the same network with the adapters disabled) and PPO with several updates per rollout, stopped
after their first epoch and resumed from that checkpoint, end with the weights of the
uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lavis.common.checkpoint import safe_torch_load

GENERATOR = {"seed": 0, "image_size": 32, "num_train": 4, "num_val": 2, "num_test": 2}
SETTINGS = {
    "sft": ("shapes_vqa_chat", {}, []),
    "dpo": ("shapes_vqa_preference", {"lora": {"r": 4, "alpha": 8, "target_modules": "auto"}},
            ["run.beta=0.1", "run.loss_type=sigmoid"]),
    # two PPO epochs of two mini-batches over each rollout: four optimizer steps per batch
    "ppo": ("shapes_vqa_grpo", {"value_head": True},
            ["run.ppo_epochs=2", "run.num_mini_batches=2", "run.max_new_tokens=3", "run.rewards=[answer_accuracy]"]),
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.mark.parametrize("task", SETTINGS)
def test_post_training_resumes_from_an_epoch_checkpoint_to_the_same_weights(task, tmp_path):
    from lavis.cli import train_main

    dataset, model_extra, run_extra = SETTINGS[task]
    cfg = {"model": {"arch": "qwen2_vl", "model_type": "tiny", **model_extra},
           "datasets": {dataset: {"build_info": {"storage": str(tmp_path / "shapes"), "generator": GENERATOR}}},
           "run": {"task": task}}
    path = tmp_path / "cfg.yaml"
    OmegaConf.save(OmegaConf.create(cfg), path)
    common = ["run.device=cpu", "run.num_workers=0", "run.batch_size_train=4", "run.max_epoch=2", "run.init_lr=1e-3",
              "run.valid_splits=[]", "run.test_splits=[]", "run.progress_bar=false", "run.tensorboard=false", *run_extra]

    def train(out: Path, *extra: str) -> dict:
        return train_main(["--cfg-path", str(path), "--options", *common, f"run.output_dir={out}", *extra])

    full = train(tmp_path / "full")
    per_epoch = safe_torch_load(tmp_path / "full" / "checkpoint_0.pth")["state"]["global_step"]
    assert per_epoch > 1 and full["train"]["global_step"] == 2 * per_epoch  # resumed mid-run, several steps left
    if task == "ppo":
        assert per_epoch == 4 * 4  # 16 prompts in batches of 4, four steps on each
    train(tmp_path / "resumed", f"run.resume_ckpt_path={tmp_path / 'full' / 'checkpoint_0.pth'}")
    a = safe_torch_load(tmp_path / "full" / "checkpoint_latest.pth")
    b = safe_torch_load(tmp_path / "resumed" / "checkpoint_latest.pth")
    assert a["model"].keys() == b["model"].keys()
    changed = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not changed, changed[:5]
    start = safe_torch_load(tmp_path / "full" / "checkpoint_0.pth")["model"]
    trained = {k for k in start if not torch.equal(start[k], a["model"][k])}
    assert trained  # the second epoch did train
    if model_extra.get("lora"):  # only the adapters train
        assert all("lora_" in k for k in trained), sorted(trained)[:5]
