"""The LAVIS-layout converter of blip_caption, and safe loading of checkpoint files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lavis.common.errors import CheckpointError
from lavis.models.blip import convert
from lavis.models.blip.blip_caption import BlipCaption


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(seed: int) -> BlipCaption:
    torch.manual_seed(seed)
    return BlipCaption.from_pretrained("tiny").eval()


@pytest.fixture(scope="module")
def model() -> BlipCaption:
    return tiny(0)


SAMPLES = {
    "image": torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7)),
    "text_input": ["a picture of a small red circle", "a picture of two blue stars above a large green square"],
}


def outputs(m: BlipCaption) -> tuple[torch.Tensor, list[str]]:
    with torch.no_grad():
        loss = m(SAMPLES).loss
    return loss, m.generate({"image": SAMPLES["image"]}, num_beams=1, max_length=12, min_length=5)


def save_lavis(model: BlipCaption, path: Path, edit=None) -> dict:
    sd = convert.ours_to_lavis(model.state_dict())
    if edit is not None:
        edit(sd)
    torch.save({"model": sd, "config": {"arch": "blip_caption"}, "epoch": 4}, path)
    return sd


# -- key names --------------------------------------------------------------------------------------
@pytest.mark.parametrize("lavis, ours", [
    ("visual_encoder.cls_token", "blip.vision_model.embeddings.class_embedding"),
    ("visual_encoder.pos_embed", "blip.vision_model.embeddings.position_embedding"),
    ("visual_encoder.patch_embed.proj.weight", "blip.vision_model.embeddings.patch_embedding.weight"),
    ("visual_encoder.blocks.11.norm1.bias", "blip.vision_model.encoder.layers.11.layer_norm1.bias"),
    ("visual_encoder.blocks.0.attn.qkv.weight", "blip.vision_model.encoder.layers.0.self_attn.qkv.weight"),
    ("visual_encoder.blocks.3.attn.proj.weight", "blip.vision_model.encoder.layers.3.self_attn.projection.weight"),
    ("visual_encoder.blocks.2.mlp.fc2.bias", "blip.vision_model.encoder.layers.2.mlp.fc2.bias"),
    ("visual_encoder.norm.weight", "blip.vision_model.post_layernorm.weight"),
    ("text_decoder.bert.encoder.layer.1.crossattention.self.key.weight",
     "blip.text_decoder.bert.encoder.layer.1.crossattention.self.key.weight"),
    ("text_decoder.cls.predictions.bias", "blip.text_decoder.cls.predictions.bias"),
])
def test_key_mapping_both_ways(lavis, ours):
    assert convert.lavis_key_to_ours(lavis) == ours
    assert convert.ours_key_to_lavis(ours) == lavis


def test_every_key_round_trips(model):
    for key in model.state_dict():
        assert convert.lavis_key_to_ours(convert.ours_key_to_lavis(key)) == key


def test_base_coco_has_the_474_keys_of_the_published_checkpoint():
    # REFERENCE-LAVIS.md: blip_coco_caption_base.pth holds 474 keys, position_ids included
    with torch.device("meta"):
        base = BlipCaption.from_pretrained("base_coco", load_finetuned=False, load_pretrained=False,
                                           tokenizer="assets/tokenizers/tiny")
    sd = convert.ours_to_lavis(base.state_dict())
    assert len(sd) == 474
    assert sum(k.startswith("visual_encoder.blocks.") for k in sd) == 12 * 12
    assert sd[convert.POSITION_IDS].dtype == torch.int64
    assert all(k.startswith(("visual_encoder.", "text_decoder.")) for k in sd)


# -- loading a LAVIS-layout checkpoint -----------------------------------------------------------------
def test_lavis_layout_checkpoint_gives_the_same_outputs(tmp_path, model):
    ref_loss, ref_caps = outputs(model)
    sd = save_lavis(model, tmp_path / "blip_coco_caption_base.pth")
    # what the published files look like: the int64 buffer and tied tensors stored once
    assert sd[convert.POSITION_IDS].dtype == torch.int64
    assert sd[convert.POSITION_IDS].tolist() == [list(range(model.max_positions))]
    emb = sd["text_decoder.bert.embeddings.word_embeddings.weight"]
    assert sd["text_decoder.cls.predictions.decoder.weight"] is emb
    assert sd["text_decoder.cls.predictions.decoder.bias"] is sd["text_decoder.cls.predictions.bias"]
    assert len(sd) == len(model.state_dict()) + 1

    other = tiny(seed=99)
    assert not torch.equal(outputs(other)[0], ref_loss)
    other.load_checkpoint(tmp_path / "blip_coco_caption_base.pth")
    loss, caps = outputs(other)
    assert torch.equal(loss, ref_loss)
    assert caps == ref_caps
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k
    emb = other.blip.text_decoder.bert.embeddings.word_embeddings.weight
    assert other.blip.text_decoder.cls.predictions.decoder.weight is emb  # still tied after loading


def test_lavis_layout_missing_and_extra_keys_are_named(tmp_path, model):
    def edit(sd):
        sd.pop("visual_encoder.norm.weight")
        sd["text_decoder.bert.extra.weight"] = torch.zeros(3)

    save_lavis(model, tmp_path / "bad.pth", edit)
    with pytest.raises(CheckpointError) as err:
        tiny(1).load_checkpoint(tmp_path / "bad.pth")
    msg = str(err.value)
    # by the names in the user's file, and by ours
    assert "visual_encoder.norm.weight" in msg and "text_decoder.bert.extra.weight" in msg
    assert "blip.vision_model.post_layernorm.weight" in msg and "blip.text_decoder.bert.extra.weight" in msg
    assert "LAVIS layout" in msg


def test_pretraining_checkpoint_heads_left_out_and_positions_resized(tmp_path, model, caplog):
    grid = 4  # a checkpoint trained at another resolution: 4x4 patches instead of the model's 8x8
    dim = model.blip.vision_model.embeddings.position_embedding.shape[-1]
    pos = torch.cat([torch.full((1, 1, dim), 5.0), torch.full((1, grid * grid, dim), 2.0)], dim=1)

    def edit(sd):
        sd["visual_encoder.pos_embed"] = pos
        sd["visual_encoder_m.cls_token"] = torch.zeros(1, 1, dim)
        sd["text_encoder.bert.embeddings.word_embeddings.weight"] = torch.zeros(4, dim)
        sd["itm_head.weight"] = torch.zeros(2, dim)
        sd["temp"] = torch.tensor(0.07)
        sd["image_queue"] = torch.zeros(dim, 8)

    save_lavis(model, tmp_path / "pretrain.pth", edit)
    other = tiny(2)
    with caplog.at_level("INFO", logger="lavis.models.blip.convert"):
        other.load_checkpoint(tmp_path / "pretrain.pth")  # strict: every captioner key present
    loaded = other.blip.vision_model.embeddings.position_embedding
    assert loaded.shape == (1, 65, dim)
    assert torch.equal(loaded[:, 0], pos[:, 0])  # the class position is kept as it is
    assert torch.allclose(loaded[:, 1:], torch.full_like(loaded[:, 1:], 2.0), atol=1e-5)  # a flat grid stays flat
    assert "itm_head" in caplog.text and "text_encoder" in caplog.text


def test_resize_rejects_non_square_grids():
    with pytest.raises(ValueError, match="square grid"):
        convert.resize_position_embedding(torch.zeros(1, 1 + 12, 4), 1 + 16)


def test_transformers_checkpoint_with_position_ids_buffer_loads(tmp_path, model):
    # older transformers saved the position_ids buffer; transformers 5 rebuilds it
    sd = dict(model.blip.state_dict())
    sd["text_decoder.bert.embeddings.position_ids"] = torch.arange(model.max_positions).unsqueeze(0)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    other = tiny(3)
    other.load_checkpoint(tmp_path / "pytorch_model.bin")
    assert torch.equal(outputs(other)[0], outputs(model)[0])


# -- safe unpickling ----------------------------------------------------------------------------------
class _RunsCode:
    """Unpickling this calls ``os.mkdir(marker)``: the side effect shows whether code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_pickle_is_refused_without_running(tmp_path, model):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    sd = convert.ours_to_lavis(model.state_dict())
    torch.save({"model": sd, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refusing to load") as err:
        tiny(4).load_checkpoint(path)
    assert str(path) in str(err.value)
    assert not marker.exists()  # the payload never ran
    # the payload really is live: an unsafe load would have run it
    torch.load(path, weights_only=False)
    assert marker.is_dir()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_plain_pickle_with_a_global_is_refused_as_unsafe(tmp_path):
    """A pickle made with ``pickle`` (protocol 4 framing, not ``torch.save``) that references code."""
    import pickle

    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps({"w": _RunsCode(str(marker))}, protocol=4))
    with pytest.raises(CheckpointError) as err:
        tiny(4).load_checkpoint(path)
    msg = str(err.value)
    assert "refusing to load" in msg and "could run code" in msg and "posix.mkdir" in msg
    assert not marker.exists()


def _damaged_files(tmp_path, model) -> dict[str, object]:
    import zipfile

    real = tmp_path / "real.pth"
    torch.save(model.state_dict(), real)
    data = real.read_bytes()
    files = {
        "random bytes": os.urandom(64 * 1024),
        "truncated checkpoint": data[: len(data) // 2],
        "empty file": b"",
        "text": b"not a checkpoint\n" * 20,
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / (name.replace(" ", "_") + ".pth")
        paths[name].write_bytes(content)
    paths["zip that is not a checkpoint"] = tmp_path / "other.pth"
    with zipfile.ZipFile(paths["zip that is not a checkpoint"], "w") as z:
        z.writestr("notes/readme.txt", "hello")
    return paths


def test_damaged_or_foreign_files_are_reported_as_unreadable_not_unsafe(tmp_path, model):
    for what, path in _damaged_files(tmp_path, model).items():
        with pytest.raises(CheckpointError) as err:
            tiny(4).load_checkpoint(path)
        msg = str(err.value)
        assert f"{path} is not a readable checkpoint" in msg and "truncated or corrupt" in msg, what
        assert "could run code" not in msg and "refusing" not in msg, what
        assert "weights_only` set to `False`" not in msg, what  # torch's advice to load unsafely is left out
