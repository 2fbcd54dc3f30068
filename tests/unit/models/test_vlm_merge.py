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


def test_merge_keeps_the_value_head_of_a_reward_model(tmp_path, one_thread, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from lavis.models.vlm.archs import load_vlm
    from lavis.models.vlm.merge import VALUE_HEAD_FILE, merge_and_save

    torch.manual_seed(0)
    lora = {"r": 4, "alpha": 8, "target_modules": "auto"}
    model = Qwen2VL.from_pretrained("tiny", lora=lora, value_head=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "value_head" in name:
                p.normal_(std=0.5)  # as if trained
    torch.save({"model": model.state_dict()}, tmp_path / "checkpoint_best.pth")
    cfg = {"model": {"arch": "qwen2_vl", "model_type": "tiny", "lora": lora, "value_head": True},
           "datasets": {}, "run": {"task": "reward_model"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = merge_and_save(tmp_path / "config.yaml", tmp_path / "checkpoint_best.pth", tmp_path / "merged")
    assert (out / VALUE_HEAD_FILE).is_file()

    samples = {"conversations": [[{"role": "user", "content": "how many shapes are there?"},
                                  {"role": "assistant", "content": "two"}],
                                 [{"role": "user", "content": "what color is the star?"},
                                  {"role": "assistant", "content": "red"}]], "output_values": True}
    model.eval()
    with torch.no_grad():
        want = model(samples).extras["values"]
        reloaded = load_vlm(out, value_head=True).eval()
        got = reloaded(samples).extras["values"]
        fresh = load_vlm(out, value_head=False)
    assert torch.allclose(got, want, atol=1e-4)
    assert not reloaded.has_lora and fresh.value_head is None

    from transformers import Qwen2VLForConditionalGeneration

    plain = Qwen2VLForConditionalGeneration.from_pretrained(str(out))  # the extra file is no obstacle
    assert not any("value_head" in n for n, _ in plain.named_parameters())
