"""BlipCaption: LAVIS caption-loss semantics, generation, checkpoints, loading helpers and the zoo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lavis.common.errors import CheckpointError, UnknownNameError
from lavis.models import load_model, load_model_and_preprocess, model_zoo
from lavis.models.blip.blip_caption import BlipCaption

VOCAB_FILE = Path(__file__).resolve().parents[3] / "lavis" / "assets" / "tokenizers" / "tiny" / "vocab.txt"
SHORT = "a picture of a small red circle"
LONG = "a picture of a large blue square to the left of a small green star in the middle"


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(seed: int = 0) -> BlipCaption:
    torch.manual_seed(seed)
    return BlipCaption.from_pretrained("tiny")


@pytest.fixture(scope="module")
def model() -> BlipCaption:
    return tiny().eval()


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


# -- tokenizer ------------------------------------------------------------------------------------
def test_tokenizer_ids(model):
    tok = model.tokenizer
    n_vocab = len(VOCAB_FILE.read_text().splitlines())
    assert 500 <= n_vocab <= 2000
    assert tok.pad_token_id == 0 and tok.convert_ids_to_tokens(0) == "[PAD]"
    assert tok.bos_token == "[DEC]" and tok.bos_token_id == n_vocab
    assert tok.enc_token_id == n_vocab + 1 and len(tok) == n_vocab + 2
    assert model.blip.config.text_config.vocab_size == len(tok)
    assert model.prompt_length == 4  # [CLS]/[DEC] a picture of
    shapes = "red green blue yellow purple orange pink brown gray white black cyan circle square triangle star " \
             "diamond cross ellipse rectangle hexagon small medium large big tiny left right above below middle"
    assert tok.tokenize(shapes) == shapes.split()  # every shapes word is one token


def test_tokenizer_decode_cleans_up_spaces_as_lavis(model):
    tok = model.tokenizer
    ids = tok("a skateboarder's trick, isn't it?", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(ids)[:5] == ["a", "skateboard", "##er", "'", "s"]
    # transformers 5's own default would give "a skateboarder ' s trick, isn ' t it?"
    assert tok.batch_decode([ids]) == ["a skateboarder's trick, isn't it?"]
    assert tok.decode(ids) == "a skateboarder's trick, isn't it?"
    assert tok.batch_decode([ids], clean_up_tokenization_spaces=False) == ["a skateboarder ' s trick, isn ' t it?"]


def test_tokenizer_without_vocabulary_is_an_error(tmp_path):
    from lavis.common.errors import ConfigError
    from lavis.models.blip.tokenizer import load_blip_tokenizer

    # transformers would quietly build a tokenizer of special tokens alone here
    with pytest.raises(ConfigError, match="no vocabulary found"):
        load_blip_tokenizer(str(tmp_path))


def test_tiny_loads_with_no_network(tmp_path):
    code = (
        "from lavis.models import load_model; m = load_model('blip_caption', 'tiny'); "
        "print(len(m.tokenizer))"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"), LAVIS_CACHE_HOME=str(tmp_path),
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")  # any request would fail
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(len(VOCAB_FILE.read_text().splitlines()) + 2)


# -- loss -------------------------------------------------------------------------------------------
def test_targets_mask_prompt_and_padding(model):
    ids, mask = model.tokenize([SHORT, LONG])
    assert ids[:, 0].tolist() == [model.tokenizer.bos_token_id] * 2
    labels = model.targets(ids)
    assert (labels[:, : model.prompt_length] == -100).all()
    assert ((labels == -100) | (mask == 1)).all() and (labels[mask == 0] == -100).all()
    scored = (labels != -100).sum(1).tolist()
    # caption words + [SEP], prompt excluded
    assert scored == [len(model.tokenizer.tokenize(c)) - 3 + 1 for c in (SHORT, LONG)]


def test_truncation_at_max_txt_len(model):
    ids, _ = model.tokenize(["a picture of " + "red " * 100])
    assert ids.shape[1] == model.max_txt_len and ids[0, -1] == model.tokenizer.sep_token_id


def test_loss_equals_hand_computation(model):
    samples = {"image": images(2), "text_input": [SHORT, LONG]}
    loss = model(samples).loss
    tok = model.tokenizer
    enc = tok([SHORT, LONG], padding="longest", return_tensors="pt")
    ids = enc.input_ids.clone()
    ids[:, 0] = tok.bos_token_id
    with torch.no_grad():
        logits = model.blip(pixel_values=samples["image"], input_ids=ids, attention_mask=enc.attention_mask).logits
    labels = ids.masked_fill(enc.attention_mask == 0, -100)
    labels[:, :4] = -100
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                               ignore_index=-100, label_smoothing=0.1)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    # transformers' own loss with the same labels agrees (label smoothing comes from the config)
    hf = model.blip(pixel_values=samples["image"], input_ids=ids, attention_mask=enc.attention_mask, labels=labels)
    assert hf.loss.item() == pytest.approx(expected.item(), abs=1e-5)


def per_example(model, captions, imgs):
    losses, mask = model.token_losses({"image": imgs, "text_input": captions})
    return (losses.sum(1) / mask.sum(1)).detach()


def test_padding_does_not_change_per_example_loss(model):
    imgs = images(2)
    alone = per_example(model, [SHORT], imgs[:1])
    padded = per_example(model, [SHORT, LONG], imgs)  # SHORT padded to LONG's length
    assert padded[0].item() == pytest.approx(alone[0].item(), abs=1e-5)
    with torch.no_grad():
        assert model({"image": imgs[:1], "text_input": [SHORT]}).loss.item() == pytest.approx(alone[0].item(), abs=1e-5)


def test_loss_is_one_mean_over_tokens(model):
    imgs = images(2)
    losses, mask = model.token_losses({"image": imgs, "text_input": [SHORT, LONG]})
    out = model({"image": imgs, "text_input": [SHORT, LONG]})
    assert out.extras["n_tokens"].item() == mask.sum().item()
    assert out.loss.item() == pytest.approx((losses.sum() / mask.sum()).item(), abs=1e-6)
    assert (losses[~mask] == 0).all()


# -- learning and generation ------------------------------------------------------------------------
def test_overfits_two_pairs_and_generates_them():
    torch.manual_seed(0)
    m = tiny(seed=1).train()
    solid = torch.zeros(2, 3, 64, 64)
    solid[0, 0], solid[1, 2] = 2.0, 2.0  # a red-ish and a blue-ish image
    captions = ["a small red circle", "two blue stars above a large green square"]
    samples = {"image": solid, "text_input": ["a picture of " + c for c in captions]}
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    for _ in range(60):
        loss = m(samples).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    assert m.generate({"image": solid}, num_beams=1, max_length=20, min_length=1) == captions
    assert m.generate({"image": solid}, num_beams=3, max_length=20, min_length=1) == captions
    # two beams per image come back image by image
    two = m.generate({"image": solid}, num_beams=3, max_length=20, min_length=1, num_captions=2)
    assert len(two) == 4 and two[0] == captions[0] and two[2] == captions[1]


def test_generate_lengths_count_the_prompt(model, monkeypatch):
    decoder = model.blip.text_decoder
    seen = []
    original = decoder.generate

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append((kwargs["input_ids"].tolist(), out))
        return out

    monkeypatch.setattr(decoder, "generate", recording)
    torch.manual_seed(0)
    out = model.generate({"image": images(3)}, num_beams=3, max_length=9, min_length=9)
    assert len(out) == 3 and all(isinstance(c, str) and c == c.strip() for c in out)
    prompt, tokens = seen[-1]
    tok = model.tokenizer
    assert prompt == [[tok.bos_token_id] + tok("a picture of", add_special_tokens=False).input_ids] * 3
    assert tokens.shape == (3, 9)  # min = max = 9 tokens, the 4 prompt tokens included
    assert out == [t.strip() for t in tok.batch_decode(tokens[:, 4:], skip_special_tokens=True)]
    sampled = model.generate({"image": images(3)}, use_nucleus_sampling=True, max_length=9, min_length=9,
                             num_captions=2)
    assert len(sampled) == 6
    with pytest.raises(ValueError, match="num_beams"):
        model.generate({"image": images(1)}, num_beams=2, num_captions=3)
    with pytest.raises(ValueError, match="positions"):
        model.generate({"image": images(1)}, max_length=10_000)


# -- checkpoints ------------------------------------------------------------------------------------
def test_checkpoint_roundtrip_safetensors_and_pth(tmp_path, model):
    from safetensors.torch import save_model

    samples = {"image": images(2, seed=3), "text_input": [SHORT, LONG]}
    with torch.no_grad():
        ref_loss = model(samples).loss
    ref_caps = model.generate({"image": samples["image"]}, num_beams=1, max_length=12, min_length=5)

    st = tmp_path / "w.safetensors"
    save_model(model, str(st))  # stores tied tensors once
    pth = tmp_path / "w.pth"
    torch.save({"model": model.state_dict()}, pth)
    for path in (st, pth):
        other = tiny(seed=123).eval()
        with torch.no_grad():
            assert other(samples).loss.item() != pytest.approx(ref_loss.item(), abs=1e-4)
        other.load_checkpoint(path)
        with torch.no_grad():
            assert torch.equal(other(samples).loss, ref_loss)
        assert other.generate({"image": samples["image"]}, num_beams=1, max_length=12, min_length=5) == ref_caps
        for a, b in zip(model.state_dict().values(), other.state_dict().values()):
            assert torch.equal(a, b)
        emb = other.blip.text_decoder.bert.embeddings.word_embeddings.weight
        assert other.blip.text_decoder.cls.predictions.decoder.weight is emb  # still tied


def test_checkpoint_key_mismatch_names_both(tmp_path, model):
    sd = dict(model.state_dict())
    sd.pop("blip.vision_model.post_layernorm.weight")
    sd["blip.text_decoder.extra.weight"] = torch.zeros(2)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        tiny().load_checkpoint(path)
    assert "blip.vision_model.post_layernorm.weight" in str(err.value)
    assert "blip.text_decoder.extra.weight" in str(err.value)


def test_transformers_layout_loads(tmp_path, model):
    path = tmp_path / "hf.pth"
    torch.save(model.blip.state_dict(), path)  # keys as in a transformers BLIP checkpoint
    other = tiny(seed=5)
    other.load_checkpoint(path)
    assert torch.equal(other.blip.vision_model.post_layernorm.weight, model.blip.vision_model.post_layernorm.weight)


def test_load_model_with_checkpoint(tmp_path, model):
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    loaded = load_model("blip_caption", "tiny", is_eval=True, checkpoint=path)
    assert not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_remote_weights_not_cached_fail_before_building(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("LAVIS_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"blip_coco_caption_base\.pth") as err:
        load_model("blip_caption", "base_coco")
    assert "`python -m lavis.zoo download blip_caption base_coco`" in str(err.value)


# -- loading helpers and the zoo --------------------------------------------------------------------
def test_load_model_and_preprocess_accepts_pil():
    m, vis, txt = load_model_and_preprocess("blip_caption", "tiny", is_eval=True)
    assert set(vis) == {"train", "eval"} and set(txt) == {"train", "eval"}
    pil = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8))
    x = vis["eval"](pil)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert vis["train"](pil).shape == (3, 64, 64)
    assert txt["train"]("A Red circle.") == "a picture of a red circle"
    assert not txt["eval"]("A Red circle.").startswith("a picture of")
    caps = m.generate({"image": x.unsqueeze(0)}, max_length=10, min_length=5)
    assert len(caps) == 1 and isinstance(caps[0], str)


def test_model_zoo_lists_types_and_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("LAVIS_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    rows = {(a, t): w for a, t, w in model_zoo.rows()}
    assert rows[("blip_caption", "tiny")] == "random init"
    assert rows[("blip_caption", "base_coco")] == "not cached"
    assert rows[("blip_caption", "large_coco")] == "not cached"
    text = str(model_zoo)
    assert repr(model_zoo) == text
    for word in ("blip_caption", "tiny", "base_coco", "large_coco", "random init"):
        assert word in text

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "blip_coco_caption_base.pth").write_bytes(b"x")
    snap = tmp_path / "hub" / "models--Salesforce--blip-image-captioning-large" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "model.safetensors").write_bytes(b"x")
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc")
    rows = {(a, t): w for a, t, w in model_zoo.rows()}
    assert rows[("blip_caption", "base_coco")].startswith("cached (finetuned:")
    assert rows[("blip_caption", "large_coco")] == "cached (hf: Salesforce/blip-image-captioning-large)"


def test_unknown_names_list_choices():
    with pytest.raises(UnknownNameError) as err:
        load_model("blip_caption", "base_cocoo")
    msg = str(err.value)
    assert "base_coco" in msg and "large_coco" in msg and "tiny" in msg
    with pytest.raises(UnknownNameError, match="blip_caption"):
        load_model("blip_captoin", "tiny")


def test_bad_config_keys_are_named():
    from lavis.common.errors import ConfigError

    with pytest.raises(ConfigError, match="model.vision_config.hiden_size"):
        BlipCaption.from_pretrained("tiny", vision_config={"hiden_size": 64})


@pytest.mark.slow  # builds the 224M-parameter base model
def test_base_coco_random_init_builds():
    m = BlipCaption.from_pretrained(
        "base_coco", load_finetuned=False, load_pretrained=False, tokenizer="assets/tokenizers/tiny",
        text_config={"vocab_size": 30524},
    )
    assert 220e6 < m.num_parameters() < 230e6
