"""Generation from inputs_embeds on the tiny type of every registered vision-language model:
greedy tokens from the embeddings equal those from the ids where the family can, and the
family's reason otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lavis.common.registry import registry
from lavis.models import load_model
from lavis.models.vlm.base import HFVisionLanguageModel

VLM_ARCHS = [a for a in registry.list_models() if issubclass(registry.get_model_class(a), HFVisionLanguageModel)]
UNSUPPORTED = {"paligemma": "does not take inputs_embeds", "qwen3_vl": "DeepStack"}


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _samples() -> dict:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    return {"conversations": [[{"role": "user", "content": "<image>\nhow many shapes are there?"}],
                              [{"role": "user", "content": "<image>\nwhat color is the star?"}]],
            "images": [[images[0]], [images[1]]]}


def test_every_vlm_arch_is_covered():
    assert set(UNSUPPORTED) <= set(VLM_ARCHS) and len(VLM_ARCHS) >= 9


@pytest.mark.parametrize("arch", VLM_ARCHS)
def test_greedy_tokens_from_embeds_equal_those_from_ids(arch):
    torch.manual_seed(0)
    model = load_model(arch, "tiny")
    samples = _samples()
    assert model.is_embeds_input == (arch not in UNSUPPORTED)
    if arch in UNSUPPORTED:
        with pytest.raises(ValueError, match=f"cannot generate from inputs_embeds: .*{UNSUPPORTED[arch]}"):
            model.generate_ids(samples, max_new_tokens=6, from_embeds=True)
        _the_reason_holds(arch, model, samples)
        return
    batch = model.batch_inputs(samples, "generate")
    embeds = model.inputs_embeds(samples)
    text_only = model.inner.get_input_embeddings()(batch["input_ids"])
    assert embeds.shape == text_only.shape  # [B, L, D]
    image_rows = batch["input_ids"] == model.processor.image_token_id
    assert image_rows.any() and not torch.allclose(embeds[image_rows], text_only[image_rows])  # image features in place
    assert torch.equal(embeds[~image_rows], text_only[~image_rows])
    _, want, want_mask = model.generate_ids(samples, max_new_tokens=6)
    _, got, got_mask = model.generate_ids(samples, max_new_tokens=6, from_embeds=True)
    assert torch.equal(got, want) and torch.equal(got_mask, want_mask)
    assert model.generate(samples, max_new_tokens=6, from_embeds=True) == model.generate(samples, max_new_tokens=6)
    _, given, _ = model.generate_ids(samples, max_new_tokens=6, inputs_embeds=embeds)
    assert torch.equal(given, want)
    with pytest.raises(ValueError, match=r"inputs_embeds has shape .*build them with model.inputs_embeds\(samples\)"):
        model.generate_ids(samples, max_new_tokens=6, inputs_embeds=embeds[:, 1:])


def _the_reason_holds(arch: str, model, samples: dict) -> None:
    """What NO_EMBEDS_GENERATION says is still true of transformers."""
    batch = model.batch_inputs(samples, "generate")
    embeds = model.inputs_embeds(samples)
    if arch == "paligemma":
        with pytest.raises(ValueError, match="inputs_embeds"):
            model.hf_model.generate(inputs_embeds=embeds, attention_mask=batch["attention_mask"], max_new_tokens=2)
    if arch == "qwen3_vl":  # its decoder takes image features besides the embeddings
        seen = {}
        hook = model.language_model.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
        try:
            with torch.no_grad():
                model.hf_model(**batch)
        finally:
            hook.remove()
        assert seen["deepstack_visual_embeds"] is not None and len(seen["deepstack_visual_embeds"]) > 0
