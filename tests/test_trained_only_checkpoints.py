"""A LoRA run with a frozen vision tower, on base weights named by the model block, saves only the
trained parameters: the checkpoint is a small fraction of the model, resume from it is bitwise
exact, the best checkpoint scores the test split, and the file serves `python evaluate.py` (as
run.eval_checkpoint, and as model.finetuned of a later config without LoRA, which merges the
adapters), the merge command, and fails clearly on another base."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lavis.common.checkpoint import safe_torch_load
from lavis.common.errors import CheckpointError

GENERATOR = {"seed": 0, "image_size": 32, "num_train": 4, "num_val": 2, "num_test": 2}
LORA = {"r": 4, "alpha": 8, "target_modules": "auto"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _write(path: Path, model: dict, storage: Path) -> Path:
    cfg = {"model": {"arch": "qwen2_vl", "model_type": "tiny", **model},
           "datasets": {"shapes_vqa_chat": {"build_info": {"storage": str(storage), "generator": GENERATOR}}},
           "run": {"task": "sft"}}
    OmegaConf.save(OmegaConf.create(cfg), path)
    return path


def test_lora_run_saves_trained_only_and_every_reader_takes_it(tmp_path):
    from lavis.cli import evaluate_main, train_main
    from lavis.models.vlm.merge import merge_and_save
    from lavis.models.vlm.qwen2_vl import Qwen2VL

    torch.manual_seed(0)
    base = tmp_path / "base.pth"
    torch.save(Qwen2VL.from_pretrained("tiny").state_dict(), base)
    weights = {"finetuned": str(base), "load_finetuned": True}
    cfg = _write(tmp_path / "lora.yaml", {**weights, "lora": LORA, "freeze_vision_tower": True}, tmp_path / "shapes")
    common = ["run.device=cpu", "run.num_workers=0", "run.batch_size_train=4", "run.batch_size_eval=8",
              "run.max_epoch=2", "run.init_lr=1e-2", "run.valid_splits=[val]", "run.test_splits=[test]",
              "run.progress_bar=false", "run.tensorboard=false", "run.max_new_tokens=4"]

    def train(out: Path, *extra: str) -> dict:
        return train_main(["--cfg-path", str(cfg), "--options", *common, f"run.output_dir={out}", *extra])

    full = train(tmp_path / "full")
    first = safe_torch_load(tmp_path / "full" / "checkpoint_0.pth")
    record = first["model_record"]
    assert record["kind"] == "trained_only" and record["base"]["finetuned"] == str(base.resolve())
    assert record["keys"] == sorted(first["model"]) and all(".lora_" in k for k in first["model"])
    total = sum(t.numel() for t in torch.load(base, weights_only=True).values())
    assert sum(t.numel() for t in first["model"].values()) < total / 10
    assert (tmp_path / "full" / "checkpoint_0.pth").stat().st_size < base.stat().st_size / 2
    train(tmp_path / "whole", "run.save_weights=all", "run.max_epoch=1", "run.valid_splits=[]", "run.test_splits=[]")
    whole = safe_torch_load(tmp_path / "whole" / "checkpoint_0.pth")
    assert whole["model_record"] is None and whole["model"].keys() > first["model"].keys()
    assert len(whole["model"]) == len(Qwen2VL.from_pretrained("tiny", lora=LORA).state_dict())

    resumed = train(tmp_path / "resumed", f"run.resume_ckpt_path={tmp_path / 'full' / 'checkpoint_0.pth'}")
    assert resumed["best"] == full["best"] and resumed["test"] == full["test"]  # the same best checkpoint
    a = safe_torch_load(tmp_path / "full" / "checkpoint_latest.pth")["model"]
    b = safe_torch_load(tmp_path / "resumed" / "checkpoint_latest.pth")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(first["model"][k], a[k]) for k in a)  # the second epoch trained

    best = tmp_path / "full" / "checkpoint_best.pth"
    test = full["test"]["shapes_vqa_chat/test"]  # scored with checkpoint_best.pth after training
    again = evaluate_main(["--cfg-path", str(cfg), "--options", *common, f"run.output_dir={tmp_path / 'eval'}",
                           f"run.eval_checkpoint={best}"])
    assert again["shapes_vqa_chat/test"] == test
    later = _write(tmp_path / "later.yaml", {"finetuned": str(best), "load_finetuned": True}, tmp_path / "shapes")
    merged = evaluate_main(["--cfg-path", str(later), "--options", *common, f"run.output_dir={tmp_path / 'e2'}"])
    assert merged["shapes_vqa_chat/test"]["answer_accuracy"] == test["answer_accuracy"]

    out = merge_and_save(tmp_path / "full" / "config.yaml", best, tmp_path / "merged")
    from transformers import Qwen2VLForConditionalGeneration

    plain = Qwen2VLForConditionalGeneration.from_pretrained(str(out))
    model = Qwen2VL.from_config(OmegaConf.merge(Qwen2VL.default_config("tiny").model, OmegaConf.load(cfg).model))
    model.load_checkpoint(best)
    fresh = Qwen2VL.from_pretrained("tiny", **weights)
    later_model = Qwen2VL.from_pretrained("tiny", finetuned=str(best), load_finetuned=True)
    assert not later_model.has_lora  # the adapters are merged into its weights
    stacked = Qwen2VL.from_pretrained("tiny", finetuned=str(best), load_finetuned=True, lora=LORA)
    assert stacked.has_lora  # new adapters on top of the merged weights
    batch = model.process_batch_conv([[{"role": "user", "content": "how many shapes are there?"},
                                       {"role": "assistant", "content": "two"}]], phase="train")
    with torch.no_grad():
        want = model.hf_model(**batch).logits
        assert not torch.allclose(fresh.hf_model(**batch).logits, want, atol=1e-3)  # the adapters trained
        assert torch.allclose(plain(**batch).logits, want, atol=1e-4)
        assert torch.allclose(later_model.hf_model(**batch).logits, want, atol=1e-4)
        assert torch.allclose(stacked.hf_model(**batch).logits, want, atol=1e-4)  # new adapters start at zero

    torch.manual_seed(1)
    torch.save(Qwen2VL.from_pretrained("tiny").state_dict(), base)  # the base changed since the run
    with pytest.raises(CheckpointError, match="the base weights of this model differ from the ones the run trained"):
        train(tmp_path / "resumed2", f"run.resume_ckpt_path={tmp_path / 'full' / 'checkpoint_0.pth'}")
