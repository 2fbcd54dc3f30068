"""Family-specific behaviour of the VLM seam: PaliGemma's bidirectional prompt and causal reply."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lavis.models import load_model
from lavis.tasks.post_training.grpo import GrpoRunConfig, GrpoTask


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


def _conv(reply: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "<image>\nwhat color is the circle?"}, {"role": "assistant", "content": reply}]


def test_paligemma_prompt_is_a_prefix_and_the_reply_is_causal():
    torch.manual_seed(0)
    m = load_model("paligemma", "tiny").eval()
    images = [[Image.new("RGB", (64, 64), (200, 40, 40))]] * 2
    batch = m.process_batch_conv([_conv("red circle"), _conv("red square")], images, "train")
    types, labels = batch["token_type_ids"], batch["labels"]
    first_reply = int((labels[0] != -100).nonzero()[0])
    assert (types[:, :first_reply] == 0).all() and (types[:, first_reply:] == 1).all()
    with torch.no_grad():
        logps = m({**batch, "output_token_logps": True}).extras["token_logps"]
    # the replies differ only in their second word: the log-prob of the first one is the same (causal)
    assert logps[0, first_reply - 1].item() == pytest.approx(logps[1, first_reply - 1].item(), abs=1e-5)
    assert abs(logps[0, first_reply].item() - logps[1, first_reply].item()) > 1e-4
    # with the reply marked as prefix, its tokens would see the later ones: the first word's log-prob changes
    leaky = {**batch, "token_type_ids": torch.zeros_like(types), "output_token_logps": True}
    with torch.no_grad():
        leaked = m(leaky).extras["token_logps"]
    assert abs(leaked[0, first_reply - 1].item() - leaked[1, first_reply - 1].item()) > 1e-4


def test_grpo_marks_paligemma_completions_as_the_causal_suffix(monkeypatch):
    torch.manual_seed(0)
    m = load_model("paligemma", "tiny")
    seen = {}
    forward = type(m).forward

    def spy(self, samples):
        seen.update(samples)
        return forward(self, samples)

    monkeypatch.setattr(type(m), "forward", spy)
    task = GrpoTask(GrpoRunConfig(num_generations=2, max_new_tokens=3, beta=0.0))
    prompt = [{"role": "user", "content": "<image>\nwhat color is the circle?"}]
    task.train_step(m, {"prompt": [prompt], "solution": ["red"], "images": [[Image.new("RGB", (64, 64))]]})
    types, labels = seen["token_type_ids"], seen["labels"]
    assert ((labels != -100) <= (types == 1)).all()  # every trained completion token is causal
    assert (types[:, -3:] == 1).all() and (types[:, 0] == 0).all()


def test_value_head_starts_fresh_from_a_checkpoint_without_one_and_loads_its_own(tmp_path):
    from safetensors.torch import save_file

    from lavis.common.registry import registry

    cls = registry.get_model_class("qwen2_vl")
    torch.manual_seed(0)
    sft = cls.from_pretrained("tiny")
    save_file({k: v.contiguous() for k, v in sft.state_dict().items()}, str(tmp_path / "sft.safetensors"))
    torch.manual_seed(1)
    rm = cls.from_pretrained("tiny", value_head=True)
    head = rm.value_head.weight.detach().clone()
    rm.load_checkpoint(tmp_path / "sft.safetensors")
    assert torch.equal(rm.value_head.weight, head)  # the SFT model has no head: the fresh one stays
    key = "hf_model.model.language_model.layers.0.mlp.up_proj.weight"
    assert torch.equal(rm.state_dict()[key], sft.state_dict()[key])
    with torch.no_grad():
        rm.value_head.weight.add_(1.0)
    save_file({k: v.contiguous() for k, v in rm.state_dict().items()}, str(tmp_path / "rm.safetensors"))
    again = cls.from_pretrained("tiny", value_head=True)
    again.load_checkpoint(tmp_path / "rm.safetensors")
    assert torch.equal(again.value_head.weight, rm.value_head.weight)


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen2_5_vl"])
def test_tiny_qwen_image_tokens_can_tell_left_from_right(name):
    """M-RoPE gives an image token's width position the slowest frequency pairs; in the tiny types
    they must still turn measurably across the image, or grounding cannot be learned."""
    m = load_model(name, "tiny")
    text = m.hf_model.config.text_config
    head_dim = text.hidden_size // text.num_attention_heads
    inv_freq = text.rope_parameters["rope_theta"] ** (-torch.arange(0, head_dim, 2).double() / head_dim)
    t, h, w = text.rope_parameters["mrope_section"]
    width_freqs = inv_freq[t + h:t + h + w]
    vision = m.hf_model.config.vision_config
    tokens_wide = 64 // vision.patch_size // vision.spatial_merge_size  # the tiny processor's 64 px images
    assert tokens_wide == 4
    assert float(width_freqs.min()) * (tokens_wide - 1) > 0.3  # radians from the left to the right token
