"""Runtime model keys: SDPA vs eager attention and activation checkpointing give the same numbers."""

from __future__ import annotations

import pytest
import torch

from lavis.common.errors import ConfigError
from lavis.models.blip.blip_caption import BlipCaption
from lavis.models.blip.sdpa import SdpaBlipAttention, SdpaBlipTextSelfAttention
from lavis.models.runtime import set_attn_implementation, set_gradient_checkpointing
from tests.helpers.blip import caption_batch as batch, tiny_caption as tiny

pytestmark = pytest.mark.usefixtures("one_thread")





def loss_and_grads(model: BlipCaption, samples: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = model(samples).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def attention_classes(model: torch.nn.Module) -> set[str]:
    return {type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Attention")}


def test_sdpa_is_the_default_and_switches_both_ways():
    model = tiny()
    classes = attention_classes(model)
    assert {"SdpaBlipAttention", "SdpaBlipTextSelfAttention"} <= classes
    assert not {"BlipAttention", "BlipTextSelfAttention"} & classes
    keys = list(model.state_dict())
    n = set_attn_implementation(model, "eager")
    assert n == 3 + 6  # 3 ViT layers; 3 decoder layers with self- and cross-attention
    assert {"BlipAttention", "BlipTextSelfAttention"} <= attention_classes(model)
    assert list(model.state_dict()) == keys  # same parameters and names
    assert "SdpaBlipAttention" not in attention_classes(tiny(attn_implementation="eager"))


def test_sdpa_matches_eager_loss_logits_and_gradients():
    sdpa = tiny().eval()
    eager = tiny(attn_implementation="eager").eval()
    samples = batch()
    loss_s, grads_s = loss_and_grads(sdpa, samples)
    loss_e, grads_e = loss_and_grads(eager, samples)
    assert loss_s.item() == pytest.approx(loss_e.item(), abs=1e-5)
    assert grads_s.keys() == grads_e.keys() and len(grads_s) > 100
    for name in grads_s:
        torch.testing.assert_close(grads_s[name], grads_e[name], atol=1e-5, rtol=1e-4, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(sdpa.decoder_logits(samples)[0], eager.decoder_logits(samples)[0],
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(sdpa.encode_image(samples["image"]), eager.encode_image(samples["image"]),
                                   atol=1e-5, rtol=1e-4)


def test_sdpa_matches_eager_with_the_key_value_cache():
    """Step-by-step decoding through the cache (self-attention appends, cross-attention reuses the
    image keys) gives the logits of a full forward, with either implementation."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    samples = batch()
    steps = {}
    for impl in ("sdpa", "eager"):
        model = tiny(attn_implementation=impl).eval()
        decoder = model.blip.text_decoder
        with torch.no_grad():
            image = model.encode_image(samples["image"])
            ids, mask = model.tokenize(samples["text_input"])
            full = decoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=image, use_cache=False).logits
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            logits = []
            for t in range(6):
                out = decoder(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1], encoder_hidden_states=image,
                              cache=cache, use_cache=True)
                logits.append(out.logits[:, -1])
        stepped = torch.stack(logits, 1)
        torch.testing.assert_close(stepped, full[:, :6], atol=1e-5, rtol=1e-4)
        steps[impl] = stepped
    torch.testing.assert_close(steps["sdpa"], steps["eager"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_sdpa_matches_eager_captions(num_beams):
    image = batch()["image"]
    got = {}
    for impl in ("sdpa", "eager"):
        model = tiny(attn_implementation=impl).eval()
        got[impl] = model.generate({"image": image}, num_beams=num_beams, max_length=16, min_length=6)
    assert got["sdpa"] == got["eager"]
    assert all(len(c.split()) >= 2 for c in got["sdpa"])


def test_sdpa_training_mode_uses_dropout():
    model = tiny(text_config={"attention_probs_dropout_prob": 0.5})
    assert model.blip.config.text_config.num_hidden_layers == 3  # merged over the tiny block
    samples = batch()
    model.train()
    torch.manual_seed(1)
    a = model(samples).loss.item()
    torch.manual_seed(2)
    b = model(samples).loss.item()
    model.eval()
    c, d = model(samples).loss.item(), model(samples).loss.item()
    assert a != b and c == d


def test_gradient_checkpointing_gives_the_same_gradients():
    plain = tiny().train()
    ckpt = tiny(gradient_checkpointing=True).train()
    decoder_layers = ckpt.blip.text_decoder.bert.encoder.layer
    assert all(layer.gradient_checkpointing for layer in decoder_layers)
    assert not any(layer.gradient_checkpointing for layer in plain.blip.text_decoder.bert.encoder.layer)
    samples = batch()
    loss_p, grads_p = loss_and_grads(plain, samples)
    loss_c, grads_c = loss_and_grads(ckpt, samples)
    assert loss_p.item() == pytest.approx(loss_c.item(), abs=1e-6)
    assert grads_p.keys() == grads_c.keys()
    for name in grads_p:
        torch.testing.assert_close(grads_p[name], grads_c[name], atol=1e-6, rtol=1e-5, msg=name)
    assert set_gradient_checkpointing(ckpt, False) >= 1
    assert not any(layer.gradient_checkpointing for layer in decoder_layers)


def test_bad_runtime_values_are_config_errors():
    with pytest.raises(ConfigError, match=r"model.attn_implementation: 'flash' is not one of 'sdpa', 'eager'"):
        tiny(attn_implementation="flash")
    with pytest.raises(ConfigError, match="model.gradient_checkpointing: expected true or false"):
        tiny(gradient_checkpointing="yes")
    problems = BlipCaption.validate_config({"attn_implementation": "flash", "gradient_checkpointing": 1})
    assert any("model.attn_implementation" in p for p in problems)
    assert any("model.gradient_checkpointing" in p for p in problems)


def test_gradient_checkpointing_on_a_model_without_support_is_a_config_error():
    from lavis.models.runtime import apply_runtime_options

    with pytest.raises(ConfigError, match="model.gradient_checkpointing: plain has no .* set it to false"):
        apply_runtime_options(torch.nn.Linear(2, 2), {"gradient_checkpointing": True}, "plain")


def test_transformers_models_with_native_sdpa_are_switched_through_their_config():
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64)).eval()
    holder = torch.nn.Sequential(bert)
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    assert set_attn_implementation(holder, "eager") == 1
    assert bert.config._attn_implementation == "eager"
    eager = bert(input_ids=ids).last_hidden_state
    assert set_attn_implementation(holder, "sdpa") == 1
    assert bert.config._attn_implementation == "sdpa"
    torch.testing.assert_close(bert(input_ids=ids).last_hidden_state, eager, atol=1e-5, rtol=1e-4)
    assert set_attn_implementation(holder, "sdpa") == 0  # already set


def test_sdpa_classes_keep_the_parameters_of_the_eager_ones():
    model = tiny()
    vit = next(m for m in model.modules() if isinstance(m, SdpaBlipAttention))
    text = next(m for m in model.modules() if isinstance(m, SdpaBlipTextSelfAttention))
    assert {n for n, _ in vit.named_parameters()} == {"qkv.weight", "qkv.bias", "projection.weight", "projection.bias"}
    assert {n for n, _ in text.named_parameters()} >= {"query.weight", "key.weight", "value.weight"}
