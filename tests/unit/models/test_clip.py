"""The CLIP family: its loss, zero-shot classifier, features, checkpoint layouts and processors."""

from __future__ import annotations

import math
import zipfile

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lavis.common.errors import CheckpointError, UnknownNameError
from lavis.models import load_model
from lavis.models.clip import convert
from lavis.models.clip.zero_shot import get_class_names, get_templates

TEXTS = ["a red circle", "a blue square", "two green stars"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, one_thread):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture
def model():
    torch.manual_seed(0)
    return load_model("clip", "tiny", is_eval=True)


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_loss_is_the_symmetric_cross_entropy_of_scaled_cosines(model):
    samples = {"image": images(), "text_input": TEXTS}
    with torch.no_grad():
        img = F.normalize(model.encode_image(samples["image"]), dim=-1)
        txt = F.normalize(model.encode_text(TEXTS), dim=-1)
        logits = math.exp(model.clip.logit_scale.item()) * img @ txt.T
        # hand computation: row-wise log-softmax of each direction at the diagonal
        i2t = -torch.diagonal(logits.log_softmax(dim=1)).mean()
        t2i = -torch.diagonal(logits.log_softmax(dim=0)).mean()
        out = model(samples)
    torch.testing.assert_close(out.loss, (i2t + t2i) / 2, atol=1e-5, rtol=1e-5)
    assert out.extras["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-5)


def test_loss_caps_the_temperature_and_trains_it(model):
    model.train()
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(500.0))
    out = model({"image": images(), "text_input": TEXTS})
    assert out.extras["logit_scale"].item() == pytest.approx(100.0)
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(10.0))
    out = model({"image": images(), "text_input": TEXTS})
    out.loss.backward()
    assert model.clip.logit_scale.grad is not None and model.clip.logit_scale.grad.abs() > 0


def test_predict_class_is_scaled_cosine_with_the_template_mean(model):
    names, templates = ["circle", "square"], ["a photo of a {}.", "a drawing of a {}"]
    samples = {"image": images(2)}
    scores = model.predict_class(samples, class_names=names, templates=templates)
    with torch.no_grad():
        columns = []
        for n in names:
            e = F.normalize(model.encode_text([t.format(n) for t in templates]), dim=-1).mean(0)
            columns.append(e / e.norm())
        img = F.normalize(model.encode_image(samples["image"]), dim=-1)
        expected = model.logit_scale * img @ torch.stack(columns, dim=1)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
    # the default set is OpenAI's 80 ImageNet templates; a different set gives different scores
    default = model.predict_class(samples, class_names=names)
    assert default.shape == (2, 2) and not torch.allclose(default, scores)


def test_classifier_is_cached_per_class_list_until_training(model):
    first = model.zero_shot_classifier(["circle", "square"], ["a {}"])
    assert model.zero_shot_classifier(["circle", "square"], ["a {}"]) is first
    assert model.zero_shot_classifier(["square", "circle"], ["a {}"]) is not first
    model.train()
    model.eval()
    again = model.zero_shot_classifier(["circle", "square"], ["a {}"])
    assert again is not first and torch.equal(again, first)


def test_predict_class_needs_class_names(model):
    with pytest.raises(ValueError, match="needs class_names"):
        model.predict_class({"image": images(1)})
    with pytest.raises(TypeError, match="get_class_names"):
        model.predict_class({"image": images(1)}, class_names="imagenet")  # type: ignore[arg-type]


def test_template_and_class_name_lists():
    assert len(get_templates("openai_imagenet")) == 80
    assert get_templates("openai_imagenet")[0]("goldfish") != get_templates("openai_imagenet")[1]("goldfish")
    assert [t("cat") for t in get_templates(["a photo of a {}."])] == ["a photo of a cat."]
    names = get_class_names("imagenet")
    assert len(names) == 1000 and names[0] == "tench"  # in label order ("crane" is both bird and machine)
    with pytest.raises(UnknownNameError, match="openai_imagenet"):
        get_templates("openai")
    with pytest.raises(ValueError, match="exactly one"):
        get_templates(["no placeholder"])
    with pytest.raises(UnknownNameError, match="imagenet"):
        get_class_names("cifar")


def test_features_are_normalised_and_match_retrieval(model):
    samples = {"image": images(2), "text_input": TEXTS[:2]}
    img = model.extract_features(samples, mode="image")
    txt = model.extract_features(samples, mode="text")
    assert img.text_embeds is None and txt.image_embeds is None
    torch.testing.assert_close(img.image_embeds_proj, F.normalize(img.image_embeds, dim=-1))
    torch.testing.assert_close(txt.text_embeds_proj.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(model.encode_for_retrieval(samples, "text").embeds, txt.text_embeds_proj)
    assert model.encode_for_retrieval(samples, "image").states == {}
    with pytest.raises(NotImplementedError, match="no multimodal"):
        model.extract_features(samples, mode="multimodal")


def test_lavis_layout_loads_strictly(model, tmp_path):
    lavis_sd = {"module." + k: v for k, v in convert.ours_to_open_clip(model.state_dict()).items()}
    lavis_sd["module.input_resolution"] = torch.tensor(32)  # OpenAI / LAVIS files carry these
    torch.save(lavis_sd, tmp_path / "lavis_clip.pth")
    torch.manual_seed(1)
    other = load_model("clip", "tiny", is_eval=True, checkpoint=tmp_path / "lavis_clip.pth")
    samples = {"image": images(2), "text_input": TEXTS[:2]}
    torch.testing.assert_close(other.predict_class(samples, ["a", "b"]), model.predict_class(samples, ["a", "b"]))
    del lavis_sd["module.ln_final.weight"]
    torch.save(lavis_sd, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=r"LAVIS / open_clip layout.*missing \['ln_final.weight'\]"):
        other.load_checkpoint(tmp_path / "broken.pth")


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_torchscript_archive_loads_without_running_it(model, tmp_path):
    # OpenAI's CLIP files are TorchScript archives of the whole network, in open_clip's names
    traced = torch.jit.trace(model.clip, (images(1), model.tokenize(["a"])), check_trace=False)
    traced.save(str(tmp_path / "openai.pt"))
    torch.manual_seed(1)
    other = load_model("clip", "tiny", is_eval=True, checkpoint=tmp_path / "openai.pt")
    samples = {"image": images(2)}
    torch.testing.assert_close(other.extract_features(samples, "image").image_embeds,
                               model.extract_features(samples, "image").image_embeds)
    # an archive whose pickle names anything but tensors and scripted modules is refused
    with zipfile.ZipFile(tmp_path / "openai.pt") as src, zipfile.ZipFile(tmp_path / "evil.pt", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/data.pkl"):
                data = b"cos\nsystem\n(S'true'\ntR."  # would call os.system if unpickled normally
            dst.writestr(item, data)
    with pytest.raises(CheckpointError, match="refusing os.system"):
        other.load_checkpoint(tmp_path / "evil.pt")


def test_clip_eval_processor_keeps_the_aspect_and_crops_the_centre():
    from lavis.processors import build_processor

    proc = build_processor({"name": "clip_image_eval", "image_size": 20})
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # the left quarter is red: outside the centre crop
    out = proc(img)
    assert out.shape == (3, 20, 20)
    red = (1.0 - proc.mean[0]) / proc.std[0]
    assert out[0].max() < red - 1  # no red pixel survived
    train = build_processor({"name": "clip_image_train", "image_size": 16})
    assert train(img).shape == (3, 16, 16)


@pytest.mark.parametrize("model_type", ["RN50", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336"])
def test_published_types_name_open_clips_openai_weights(model_type):
    import open_clip

    from lavis.models.clip.clip_model import Clip
    from lavis.zoo.entries import get_entry

    cfg = Clip.default_config(model_type)
    pcfg = open_clip.get_pretrained_cfg(cfg.model.model_name, "openai")
    assert cfg.model.quick_gelu is True and pcfg["quick_gelu"] is True
    hub, url = get_entry("clip", model_type).sources
    assert (hub.kind, hub.location + "/", hub.filenames) == ("hf", pcfg["hf_hub"], ("open_clip_pytorch_model.bin",))
    assert (url.kind, url.location) == ("url", pcfg["url"])
    assert url.sha256 == url.location.split("/")[-2]  # OpenAI publishes the file's sha256 in its URL
    eval_size = cfg.preprocess.vis_processor.eval.image_size
    assert eval_size == open_clip.get_model_config(cfg.model.model_name)["vision_cfg"]["image_size"]
