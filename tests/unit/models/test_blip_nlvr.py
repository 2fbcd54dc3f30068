"""blip_nlvr: the two-image cross-attention, the classifier and the LAVIS layout."""

from __future__ import annotations

import pytest
import torch

from lavis.models import load_model
from lavis.models.blip import convert
from lavis.models.blip.blip_nlvr import TwinOutput

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["the left image has two red circles", "both images show a blue square"]


@pytest.fixture(scope="module")
def nlvr():
    torch.manual_seed(0)
    return load_model("blip_nlvr", "tiny", is_eval=True)


def samples() -> dict:
    g = torch.Generator().manual_seed(4)
    return {"image0": torch.randn(2, 3, 64, 64, generator=g), "image1": torch.randn(2, 3, 64, 64, generator=g),
            "text_input": list(TEXTS), "label": torch.tensor([0, 1])}


def test_twin_output_by_hand():
    torch.manual_seed(0)
    a, b, res = torch.randn(3, 2, 5, 8).unbind(0)
    mean = TwinOutput(8, 1e-12, 0.0, merge=False)
    expected = torch.layer_norm((mean.dense0(a) + mean.dense1(b)) / 2 + res, (8,), mean.LayerNorm.weight, mean.LayerNorm.bias, 1e-12)
    torch.testing.assert_close(mean(a, b, res), expected)
    merged = TwinOutput(8, 1e-12, 0.0, merge=True)
    assert merged.merge_layer is not None
    cat = torch.cat([merged.dense0(a), merged.dense1(b)], -1)
    expected = torch.layer_norm(merged.merge_layer(cat) + res, (8,), merged.LayerNorm.weight, merged.LayerNorm.bias, 1e-12)
    torch.testing.assert_close(merged(a, b, res), expected)


def test_layers_read_both_images_in_order(nlvr):
    layers = nlvr.text_encoder.encoder.layer
    assert [layer.crossattention.output.merge_layer is not None for layer in layers] == [False, True]  # merge_from_layer 1
    s = samples()
    logits = nlvr.predict_class(s)
    assert logits.shape == (2, 2)
    swapped = nlvr.predict_class(dict(s, image0=s["image1"], image1=s["image0"]))
    assert (logits - swapped).abs().max() > 1e-4  # the branches differ: which image is which matters
    with torch.no_grad():  # with identical branches and mean merging, the order does not matter
        twin = load_model("blip_nlvr", "tiny", is_eval=True)
        twin.load_state_dict(nlvr.state_dict())
        for layer in twin.text_encoder.encoder.layer:
            ca = layer.crossattention
            ca.self1.load_state_dict(ca.self0.state_dict())
            ca.output.dense1.load_state_dict(ca.output.dense0.state_dict())
            ca.output.merge_layer = None
        torch.testing.assert_close(twin.predict_class(s), twin.predict_class(dict(s, image0=s["image1"], image1=s["image0"])),
                                   atol=1e-5, rtol=1e-4)


def test_loss_and_errors(nlvr):
    s = samples()
    with torch.no_grad():
        out = nlvr(s)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(nlvr.predict_class(s), s["label"]))
    with pytest.raises(ValueError, match=r"needs samples \['image1'\]"):
        nlvr.predict_class({k: v for k, v in s.items() if k != "image1"})
    with pytest.raises(ValueError, match=r"needs samples\['label'\]"):
        nlvr({k: v for k, v in s.items() if k != "label"})


def test_lavis_layout_round_trip(nlvr, tmp_path):
    sd = convert.image_text_to_lavis(nlvr.state_dict())
    assert "text_encoder.encoder.layer.1.crossattention.self1.query.weight" in sd and "cls_head.2.weight" in sd
    assert "text_encoder.encoder.layer.1.crossattention.output.merge_layer.weight" in sd
    torch.save({"model": sd}, tmp_path / "nlvr.pth")
    torch.manual_seed(3)
    fresh = load_model("blip_nlvr", "tiny", checkpoint=tmp_path / "nlvr.pth", is_eval=True)
    torch.testing.assert_close(fresh.predict_class(samples()), nlvr.predict_class(samples()))
