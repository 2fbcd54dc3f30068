"""LoRA training state -> merged transformers checkpoint that loads without lavis."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from lavis.models.vlm.qwen2_vl import Qwen2VL


def test_merge_command_writes_a_plain_transformers_checkpoint(tmp_path, one_thread, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    lora = {"r": 4, "alpha": 8, "target_modules": "auto"}
    model = Qwen2VL.from_pretrained("tiny", lora=lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)  # as if trained
    torch.save({"model": model.state_dict()}, tmp_path / "checkpoint_best.pth")
    cfg = {"model": {"arch": "qwen2_vl", "model_type": "tiny", "lora": lora},
           "datasets": {}, "run": {"task": "sft"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "merged"
    cmd = [sys.executable, "-m", "lavis.models.vlm", "merge", "--cfg-path", str(tmp_path / "config.yaml"),
           "--checkpoint", str(tmp_path / "checkpoint_best.pth"), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"wrote {out}" in done.stdout

    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    plain = Qwen2VLForConditionalGeneration.from_pretrained(str(out))
    assert not any("lora" in n for n, _ in plain.named_parameters())
    processor = AutoProcessor.from_pretrained(str(out))
    batch = model.process_batch_conv([[{"role": "user", "content": "how many shapes are there?"},
                                       {"role": "assistant", "content": "two"}]], phase="train")
    with torch.no_grad():
        want = model.hf_model(**batch).logits
        got = plain(**batch).logits
        with model.adapters_disabled():
            base = model.hf_model(**batch).logits
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, base, atol=1e-3)  # the adapters are in the weights
    assert processor.tokenizer.get_vocab() == model.tokenizer.get_vocab()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "exists; remove it or give another --out" in again.stderr
