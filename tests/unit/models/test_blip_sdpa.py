"""BLIP attention speed paths: ``attend`` in bf16 on CPU (matrix products instead of the fused
kernel) and the cross-attention cache shared by the beams of an input. Both must give the numbers
of the plain paths: fp32 unchanged, bf16 within bf16 rounding of fp32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lavis.models.blip.sdpa import SharedCrossAttentionCache, attend, shared_cross_attention_cache
from tests.helpers.blip import caption_batch as samples, tiny_caption as tiny

pytestmark = pytest.mark.usefixtures("one_thread")

# bf16 keeps 8 significant bits (relative rounding 2**-9 = 0.2%); a few layers of it stay within 2%
BF16_REL = 2e-2


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm())


def qkv(batch: int, length: int, source: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(batch, 4, n, 16, generator=g) for n in (length, source, source)]


def masks(batch: int, source: int) -> dict[str, torch.Tensor | None]:
    keep = torch.ones(batch, 1, 1, source, dtype=torch.bool)
    keep[0, ..., -3:] = False  # the first row does not see its last 3 keys
    additive = torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)
    return {"none": None, "bool": keep, "additive": additive}


@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive"])
def test_attend_in_bf16_agrees_with_fp32_sdpa_values_and_gradients(mask_kind):
    q, k, v = qkv(2, 7, 11)
    mask = masks(2, 11)[mask_kind]
    leaves32 = [t.clone().requires_grad_() for t in (q, k, v)]
    leaves16 = [t.to(torch.bfloat16).requires_grad_() for t in (q, k, v)]
    want = F.scaled_dot_product_attention(*leaves32, attn_mask=mask)
    got = attend(*leaves16, mask)
    assert got.dtype == torch.bfloat16 and got.shape == (2, 4, 7, 16)
    assert rel_error(got, want) < BF16_REL
    upstream = torch.randn(want.shape, generator=torch.Generator().manual_seed(1))
    want.backward(upstream)
    got.backward(upstream.to(torch.bfloat16))
    for g16, g32 in zip(leaves16, leaves32):
        assert g16.grad is not None and g32.grad is not None
        assert rel_error(g16.grad, g32.grad) < BF16_REL
    if mask is not None:  # masked keys get no gradient
        assert torch.all(leaves16[1].grad[0, :, -3:] == 0)


def test_attend_in_fp32_is_sdpa_exactly():
    q, k, v = qkv(2, 5, 9)
    mask = masks(2, 9)["additive"]
    assert torch.equal(attend(q, k, v, mask, scale=0.3), F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                                                         scale=0.3))




def test_bf16_autocast_agrees_with_fp32_features_logits_loss_and_gradients():
    model = tiny()
    batch = samples()
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(batch).loss
            with torch.no_grad():
                features = model.encode_image(batch["image"])
                logits = model.decoder_logits(batch)[0]
        loss.float().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        out[name] = {"features": features, "logits": logits, "loss": loss.detach(), "grads": grads}
    for key in ("features", "logits", "loss", "grads"):
        assert 0 < rel_error(out["bf16"][key], out["fp32"][key]) < BF16_REL, key  # > 0: bf16 did run


def test_bf16_training_attention_applies_dropout():
    model = tiny(text_config={"attention_probs_dropout_prob": 0.5}).train()
    batch = samples()
    losses = []
    for seed in (1, 2, 1):
        torch.manual_seed(seed)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses.append(model(batch).loss.item())
    assert losses[0] != losses[1] and losses[0] == losses[2]


def test_shared_cross_attention_cache_gives_the_logits_of_the_per_row_cache():
    """3 decoder rows per image, their beams reordered within each image between steps: the cache
    that holds the image keys once gives the logits of transformers' cache holding them per row."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    model = tiny().eval()
    decoder = model.blip.text_decoder
    rows = 3
    with torch.no_grad():
        image = model.encode_image(samples()["image"])  # [2, S, D]
        expanded = image.repeat_interleave(rows, dim=0)
        ids = torch.randint(5, 100, (2 * rows, 5), generator=torch.Generator().manual_seed(0))
        shared = shared_cross_attention_cache(decoder, image)
        assert isinstance(shared, SharedCrossAttentionCache)
        assert shared.cross_attention_cache.layers[0].keys.shape[0] == 2  # once per image
        plain = EncoderDecoderCache(DynamicCache(), DynamicCache())
        reorder = torch.tensor([2, 2, 0, 4, 3, 3])  # beams stay within their image
        for t in range(ids.shape[1]):
            step = {}
            for name, cache in (("shared", shared), ("plain", plain)):
                out = decoder(input_ids=ids[:, t:t + 1], attention_mask=torch.ones(2 * rows, t + 1, dtype=torch.long),
                              encoder_hidden_states=expanded, cache=cache, use_cache=True)
                step[name] = out.logits[:, -1]
                cache.reorder_cache(reorder)
            torch.testing.assert_close(step["shared"], step["plain"], atol=1e-5, rtol=1e-4)
        assert shared.cross_attention_cache.layers[0].keys.shape[0] == 2  # reordering left it alone


def test_shared_cross_attention_cache_needs_the_sdpa_modules():
    image = torch.randn(2, 5, 128)
    assert shared_cross_attention_cache(tiny(attn_implementation="eager").blip.text_decoder, image) is None


@pytest.mark.parametrize("kwargs", [{"num_beams": 3, "num_captions": 2}, {"use_nucleus_sampling": True,
                                                                        "num_captions": 3}])
def test_captions_with_the_shared_cache_equal_eager_ones(kwargs):
    image = samples()["image"]
    got = {}
    for impl in ("sdpa", "eager"):
        model = tiny(attn_implementation=impl).eval()
        torch.manual_seed(7)
        got[impl] = model.generate({"image": image}, max_length=14, min_length=6, **kwargs)
    assert len(got["sdpa"]) == 2 * kwargs["num_captions"]
    assert got["sdpa"] == got["eager"]
