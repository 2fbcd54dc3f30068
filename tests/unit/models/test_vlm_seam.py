"""The VLM seam on the tiny types: conversations to tensors (labels on replies only, padding per
phase, image tokens), placeholders, modules, LoRA, checkpoint -> arch, generation."""

from __future__ import annotations

import json

import pytest
import torch

from lavis.common.errors import ConfigError
from lavis.models import load_model
from lavis.models.vlm.archs import CHECKPOINT_ARCHS, arch_for_checkpoint, load_vlm
from lavis.models.vlm.conversation import ConversationError

#: image tokens per 64 px image of each tiny type (from its processor and config; LLaVA-NeXT and
#: -OneVision: a 32 px tile and the whole image, 16 each, and a newline token per row of the tile)
IMAGE_TOKENS = {"llava": 16, "qwen2_vl": 16, "qwen2_5_vl": 16, "llava_next": 36, "llava_onevision": 36,
                "qwen3_vl": 16, "idefics3": 4, "smolvlm": 4, "paligemma": 16, "internvl": 4}
ARCHS = sorted(IMAGE_TOKENS)


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {arch: load_model(arch, "tiny") for arch in ARCHS}


def image(value: float):
    from PIL import Image

    return Image.new("RGB", (64, 64), (int(value), 40, 200))


CONVS = [
    [{"from": "human", "value": "<image>\nwhat color is the circle?"}, {"from": "gpt", "value": "red"},
     {"from": "human", "value": "and here <image> ?"}, {"from": "gpt", "value": "two shapes"}],
    [{"role": "user", "content": "how many shapes are there?"}, {"role": "assistant", "content": "one"}],
]


@pytest.mark.parametrize("arch", ARCHS)
def test_train_batch_labels_only_replies_right_padded(models, arch):
    m = models[arch]
    batch = m.process_batch_conv(CONVS, [[image(10), image(200)], [image(90)]], phase="train")
    tok = m.tokenizer
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == mask.shape
    trained = [tok.convert_ids_to_tokens(ids[i][labels[i] != -100]) for i in range(2)]
    assert trained[0] == ["red", "<|im_end|>", "two", "shapes", "<|im_end|>"]
    assert trained[1] == ["one", "<|im_end|>"]
    # right padding: the short row ends in pads that are masked and carry no loss
    n = int(mask[1].sum())
    assert mask[1, :n].all() and not mask[1, n:].any() and (ids[1, n:] == tok.pad_token_id).all()
    assert (labels[1, n:] == -100).all() and mask[0].all()
    # three images, each expanded to its image tokens
    image_id = m.processor.image_token_id
    assert (ids == image_id).sum().item() == 3 * IMAGE_TOKENS[arch]
    assert "pixel_values" in batch and set(m.multimodal_keywords) <= set(batch)


@pytest.mark.parametrize("arch", ARCHS)
def test_generation_batch_is_left_padded_and_ends_with_the_prompt(models, arch):
    m = models[arch]
    batch = m.process_batch_conv(CONVS, [[image(10), image(200)], [image(90)]], phase="generate")
    assert "labels" not in batch
    ids, mask = batch["input_ids"], batch["attention_mask"]
    short = int(mask[1].sum())
    assert not mask[1, : ids.shape[1] - short].any() and mask[1, -short:].all()
    tail = m.tokenizer.convert_ids_to_tokens(ids[:, -2:].flatten())
    assert tail == ["<|im_start|>", "assistant"] * 2  # the final reply is dropped, the prompt added


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_loss_is_transformers_loss_on_reply_tokens(models, arch):
    m = models[arch]
    batch = m.process_batch_conv(CONVS, [[image(10), image(200)], [image(90)]], phase="train")
    out = m({**batch, "output_token_logps": True})
    ref = m.hf_model(**batch).loss
    assert out.loss.item() == pytest.approx(ref.item(), abs=1e-5)
    mask = out.extras["loss_mask"]
    assert mask.sum().item() == (batch["labels"] != -100).sum().item() == 7
    # the mean token log-prob over the replies is minus the loss
    assert (out.extras["token_logps"].sum() / mask.sum()).item() == pytest.approx(-out.loss.item(), abs=1e-5)


def test_placeholders_inserted_validated_removed(models):
    m = models["llava"]
    turns = m.format_multimodal_prompt([{"from": "human", "value": "what is it?"}], num_images=2)
    assert turns[0]["content"] == "<image>\n<image>\nwhat is it?"
    with pytest.raises(ConversationError, match=r"1 <image> placeholder\(s\) in the text but 2 image\(s\)"):
        m.format_multimodal_prompt([{"from": "human", "value": "<image> what?"}], num_images=2)
    with pytest.raises(ConversationError, match="role 'bot' is not one of"):
        m.format_multimodal_prompt([{"from": "bot", "value": "hi"}], num_images=0)
    assert m.remove_image_placeholder("<image>\nwhat <image>is it?") == "what is it?"
    assert m.is_multimodal_prompt_valid([{"role": "user", "content": "<image> a"}], 1)
    assert not m.is_multimodal_prompt_valid([{"role": "user", "content": "<image> a"}], 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_modules_and_vision_freezing(arch):
    m = load_model(arch, "tiny")
    vision = {id(p) for p in m.vision_tower.parameters()}
    targets = m.default_lora_target
    lm = next(name for name, module in m.inner.named_modules() if module is m.language_model)
    assert targets and lm in ("model.language_model", "model.text_model") and all(t.startswith(lm + ".") for t in targets)
    assert any(t.endswith("q_proj") for t in targets) and not any("lm_head" in t for t in targets)
    projector = list(m.projector.parameters())
    m.freeze_vision_tower()
    assert projector and all(p.requires_grad for p in projector)
    frozen = {id(p) for p in m.parameters() if not p.requires_grad}
    assert frozen == vision - {id(p) for p in projector}


def test_lora_trains_only_adapters_and_disabling_them_gives_the_base_model():
    torch.manual_seed(0)
    base = load_model("qwen2_vl", "tiny")
    torch.manual_seed(0)
    lora = load_model("qwen2_vl", "tiny")
    from lavis.models.vlm.adapters import apply_lora

    apply_lora(lora, {"r": 4, "alpha": 8, "target_modules": "auto"})
    assert lora.has_lora and not base.has_lora
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.normal_()
    batch = base.process_batch_conv(CONVS[1:], [[image(5)]], phase="train")
    with torch.no_grad():
        want = base(batch).loss
        changed = lora(batch).loss
        with lora.adapters_disabled():
            off = lora(batch).loss
    assert off.item() == pytest.approx(want.item(), abs=1e-6)
    assert abs(changed.item() - want.item()) > 1e-3
    with pytest.raises(ConfigError, match="model.lora.rank: unknown key"):
        apply_lora(base, {"rank": 4})


def test_checkpoint_picks_its_arch_and_loads_the_same_weights(models, tmp_path):
    m = models["qwen2_vl"]
    m.hf_model.save_pretrained(tmp_path / "ckpt")
    m.processor.save_pretrained(tmp_path / "ckpt")
    assert arch_for_checkpoint(tmp_path / "ckpt") == "qwen2_vl"
    loaded = load_vlm(tmp_path / "ckpt")
    assert type(loaded).__name__ == "Qwen2VL"
    batch = m.process_batch_conv(CONVS[1:], [[image(5)]], phase="train")
    with torch.no_grad():
        assert loaded(batch).loss.item() == pytest.approx(m(batch).loss.item(), abs=1e-6)
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    with pytest.raises(ConfigError) as e:
        arch_for_checkpoint(tmp_path / "bert")
    assert "BertModel" in str(e.value) and "LlavaForConditionalGeneration, LlavaNextForConditionalGeneration" in str(e.value)
    assert set(CHECKPOINT_ARCHS.values()) == set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_left_padded_greedy_generation_does_not_depend_on_the_batch(models, arch):
    m = models[arch].eval()
    long = [{"role": "user", "content": "<image>\nwhat color is the small red circle to the left of the star?"}]
    short = [{"role": "user", "content": "<image>\nhow many?"}]
    alone = m.generate({"conversations": [short], "images": [[image(30)]]}, max_new_tokens=5, min_new_tokens=5)
    both = m.generate({"conversations": [long, short], "images": [[image(90)], [image(30)]]},
                      max_new_tokens=5, min_new_tokens=5)
    m.train()
    assert both[1] == alone[0] and len(alone[0].split()) >= 1


def test_attention_is_sdpa_unless_configured():
    from lavis.common.registry import registry

    assert load_model("llava", "tiny").hf_model.model.language_model.config._attn_implementation == "sdpa"
    eager = registry.get_model_class("llava").from_pretrained("tiny", attn_implementation="eager")
    assert eager.hf_model.model.language_model.config._attn_implementation == "eager"


@pytest.mark.parametrize("arch", ARCHS)
def test_sampling_never_emits_image_tokens(arch):
    torch.manual_seed(0)
    m = load_model(arch, "tiny").eval()
    media = m.media_token_ids
    assert m.processor.image_token_id in media and m.tokenizer.eos_token_id not in media
    def favour_image_token(module, args, out):  # make the image token by far the most likely next token
        out[..., m.processor.image_token_id] += 100.0
        return out

    m.lm_head.register_forward_hook(favour_image_token)
    samples = {"conversations": [[{"role": "user", "content": "<image>\nwhat?"}]] * 2, "images": [[image(1)], [image(2)]]}
    _, ids, mask = m.generate_ids(samples, do_sample=True, temperature=1.0, max_new_tokens=6, min_new_tokens=6)
    assert mask.all() and not torch.isin(ids, torch.tensor(media)).any()
    with torch.no_grad():
        forced = m.hf_model.generate(**m.process_batch_conv(samples["conversations"], samples["images"], "generate"),
                                     max_new_tokens=2, do_sample=False, pad_token_id=m.tokenizer.pad_token_id)
    assert (forced[:, -2:] == m.processor.image_token_id).all()  # what suppression prevents


@pytest.mark.parametrize("arch", ARCHS)
def test_every_family_checkpoint_round_trips_through_load_vlm(models, arch, tmp_path):
    from lavis.common.registry import registry

    m = models[arch]
    assert CHECKPOINT_ARCHS[registry.get_model_class(arch).HF_MODEL_CLASS.split(":")[1]] == arch
    m.hf_model.save_pretrained(tmp_path / "ckpt")
    m.processor.save_pretrained(tmp_path / "ckpt")
    loaded = load_vlm(tmp_path / "ckpt")
    assert type(loaded) is type(m)
    batch = m.process_batch_conv(CONVS[1:], [[image(5)]], phase="train")
    with torch.no_grad():
        assert loaded(batch).loss.item() == pytest.approx(m(batch).loss.item(), abs=1e-5)
