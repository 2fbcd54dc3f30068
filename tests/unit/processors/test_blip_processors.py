"""BLIP image and text processors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from lavis.common.registry import registry
from lavis.processors.base_processor import build_processor
from lavis.processors.blip_processors import (
    BLIP_MEAN, BLIP_STD, BlipCaptionProcessor, BlipImageEvalProcessor, BlipImageTrainProcessor, BlipQuestionProcessor,
    NormalizeUint8, read_uint8,
)
from lavis.processors.clip_processors import ClipImageTrainProcessor


def constant(rgb=(200, 100, 50), size=(40, 30), mode="RGB") -> Image.Image:
    return Image.new(mode, size, rgb if mode == "RGB" else rgb[0])


def halves(size: int = 32) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (size, size), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, size // 2, size))
    return img


def expected(rgb) -> torch.Tensor:
    return torch.tensor([(v / 255 - m) / s for v, m, s in zip(rgb, BLIP_MEAN, BLIP_STD)])


def test_registered_names() -> None:
    assert registry.get_processor_class("blip_image_train") is BlipImageTrainProcessor
    assert registry.get_processor_class("blip_image_eval") is BlipImageEvalProcessor
    assert registry.get_processor_class("blip_caption") is BlipCaptionProcessor
    assert registry.get_processor_class("blip_question") is BlipQuestionProcessor


@pytest.mark.parametrize("cls", [BlipImageTrainProcessor, BlipImageEvalProcessor])
def test_shape_and_normalization_of_a_constant_image(cls) -> None:
    proc = cls(image_size=24)
    out = proc(constant())
    assert out.shape == (3, 24, 24) and out.dtype == torch.float32
    want = expected((200, 100, 50)).view(3, 1, 1).expand(3, 24, 24)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)


def test_defaults_are_blip_settings() -> None:
    train, ev = BlipImageTrainProcessor(), BlipImageEvalProcessor()
    assert train.image_size == ev.image_size == 384
    assert train.mean == ev.mean == (0.48145466, 0.4578275, 0.40821073)
    assert train.std == ev.std == (0.26862954, 0.26130258, 0.27577711)
    assert (train.min_scale, train.max_scale, train.horizontal_flip) == (0.5, 1.0, True)
    assert ev(constant(size=(50, 70))).shape == (3, 384, 384)


def test_images_from_paths_and_other_modes(tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    constant((10, 20, 30), size=(16, 16)).save(path)
    proc = BlipImageEvalProcessor(image_size=8)
    torch.testing.assert_close(proc(str(path)), proc(path))
    torch.testing.assert_close(proc(path)[:, 0, 0], expected((10, 20, 30)), atol=1e-5, rtol=0)
    gray = proc(constant((128,), mode="L"))
    assert gray.shape == (3, 8, 8)
    torch.testing.assert_close(gray[:, 0, 0], expected((128, 128, 128)), atol=1e-5, rtol=0)
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 255))
    torch.testing.assert_close(proc(rgba)[:, 0, 0], expected((255, 0, 0)), atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="PIL image or an image path"):
        proc(torch.zeros(3, 8, 8))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        proc(tmp_path / "missing.png")


def test_eval_keeps_left_and_right() -> None:
    out = BlipImageEvalProcessor(image_size=16)(halves())
    red, blue = expected((255, 0, 0)), expected((0, 0, 255))
    torch.testing.assert_close(out[:, 8, 0], red, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 8, 15], blue, atol=1e-5, rtol=0)


def test_horizontal_flip_can_be_turned_off() -> None:
    img = halves()
    red = expected((255, 0, 0))
    no_flip = BlipImageTrainProcessor(image_size=16, min_scale=1.0, horizontal_flip=False)
    flip = BlipImageTrainProcessor(image_size=16, min_scale=1.0, horizontal_flip=True)
    torch.manual_seed(0)
    assert all(torch.allclose(no_flip(img)[:, 8, 0], red, atol=1e-5) for _ in range(20))
    torch.testing.assert_close(no_flip(img), BlipImageEvalProcessor(image_size=16)(img))
    left_red = [torch.allclose(flip(img)[:, 8, 0], red, atol=1e-5) for _ in range(40)]
    assert 5 < sum(left_red) < 35  # flipped about half of the time


def test_random_crop_follows_torch_seed_and_stays_in_scale() -> None:
    img = Image.effect_noise((64, 64), 50).convert("RGB")
    proc = BlipImageTrainProcessor(image_size=32, min_scale=0.2, max_scale=0.4, horizontal_flip=False)
    torch.manual_seed(3)
    a = proc(img)
    torch.manual_seed(3)
    b = proc(img)
    assert torch.equal(a, b) and not torch.equal(b, proc(img))
    with pytest.raises(ValueError, match="min_scale"):
        BlipImageTrainProcessor(min_scale=0.9, max_scale=0.5)


def test_caption_cleaning() -> None:
    proc = BlipCaptionProcessor()
    assert proc('  A Large RED "circle"!  (next to) a *square*.  ') == "a large red circle next to a square"
    assert proc("one:two;three~four#five\n\tsix") == "one two three four five six"
    assert proc("keep, commas? and-dashes") == "keep, commas? and-dashes"
    assert proc("...") == ""


def test_caption_prompt_and_max_words() -> None:
    proc = BlipCaptionProcessor(prompt="a picture of ", max_words=3)
    assert proc("A big RED circle on the left.") == "a picture of a big red"
    assert BlipCaptionProcessor(max_words=50)(" ".join(["w"] * 60)) == " ".join(["w"] * 50)
    with pytest.raises(TypeError, match="string"):
        proc(["a", "list"])
    with pytest.raises(ValueError, match="max_words"):
        BlipCaptionProcessor(max_words=0)


def test_question_cleaning() -> None:
    proc = BlipQuestionProcessor(max_words=4)
    assert proc("What COLOR is the (big) circle?") == "what color is the"
    assert BlipQuestionProcessor()("Is there a square?!") == "is there a square?"


def test_built_from_config_with_name() -> None:
    proc = build_processor({"name": "blip_caption", "prompt": "a photo of ", "max_words": 5})
    assert isinstance(proc, BlipCaptionProcessor) and proc("X. Y") == "a photo of x y"
    img = build_processor({"name": "blip_image_train", "image_size": 16, "mean": [0.5, 0.5, 0.5],
                           "std": [0.5, 0.5, 0.5], "horizontal_flip": False})
    out = img(constant((255, 255, 255)))
    assert out.shape == (3, 16, 16) and torch.allclose(out, torch.ones_like(out))
    with pytest.raises(TypeError):
        build_processor({"name": "blip_image_eval", "image_sise": 16})


def photo_jpeg(path: Path, size=(90, 70), mode="RGB") -> Path:
    g = torch.Generator().manual_seed(0)
    noise = (torch.rand(size[1] // 10, size[0] // 10, 3, generator=g) * 255).to(torch.uint8).numpy()
    Image.fromarray(noise).resize(size, Image.BICUBIC).convert(mode).save(path)
    return path


def test_read_uint8_gives_the_pixels_of_pil_decoding(tmp_path: Path) -> None:
    """Training processors decode with torchvision: the same pixels as PIL's decoder, bit for bit."""
    for name, mode in (("rgb.jpg", "RGB"), ("grey.jpg", "L"), ("cmyk.jpg", "CMYK"), ("rgba.png", "RGBA"),
                       ("rgb.bmp", "RGB")):  # BMP: torchvision cannot, PIL's turn
        path = photo_jpeg(tmp_path / name, mode=mode)
        want = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        got = read_uint8(path)
        assert got.dtype == torch.uint8 and torch.equal(got, want), name
        assert torch.equal(read_uint8(str(path)), want) and torch.equal(read_uint8(Image.open(path)), want), name
    deep = tmp_path / "grey16.png"  # torchvision decodes 16-bit PNGs to uint16: PIL's conversion instead
    Image.fromarray((np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)).save(deep)
    assert torch.equal(read_uint8(deep), torch.from_numpy(np.array(Image.open(deep).convert("RGB"))).permute(2, 0, 1))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_uint8(tmp_path / "missing.jpg")
    for bad, content in (("empty.jpg", b""), ("truncated.jpg", (tmp_path / "rgb.jpg").read_bytes()[:300])):
        (tmp_path / bad).write_bytes(content)
        with pytest.raises(OSError):  # PIL's errors (UnidentifiedImageError, truncated file), as PIL decoding gives
            read_uint8(tmp_path / bad)
    with pytest.raises(TypeError, match="a PIL image, an image path or a uint8"):
        BlipImageTrainProcessor()(torch.zeros(3, 8, 8))


def test_normalize_uint8_is_to_tensor_then_normalize() -> None:
    x = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    want = transforms.Normalize(BLIP_MEAN, BLIP_STD)(x.float() / 255)
    strided = x.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    for img in (x, strided):
        out = NormalizeUint8(BLIP_MEAN, BLIP_STD)(img)
        assert out.dtype == torch.float32 and out.is_contiguous()
        torch.testing.assert_close(out, want, atol=2e-6, rtol=0)


@pytest.mark.parametrize("cls, kwargs, flip", [(BlipImageTrainProcessor, {"min_scale": 0.3}, True),
                                               (ClipImageTrainProcessor, {}, False)])
def test_train_pipeline_matches_the_pil_pipeline(tmp_path: Path, cls, kwargs, flip) -> None:
    """The uint8 pipeline draws the same crops and flips from torch's RNG as torchvision's PIL
    transforms (RandomResizedCrop bicubic, RandomHorizontalFlip, ToTensor, Normalize) and gives the
    same pixels to within 2/255 (antialiased bicubic on uint8 against PIL's)."""
    path = photo_jpeg(tmp_path / "img.jpg", size=(120, 80))
    proc = cls(image_size=48, **kwargs)
    crop = transforms.RandomResizedCrop(48, scale=(proc.transform.transforms[0].scale),
                                        interpolation=InterpolationMode.BICUBIC)
    ref = transforms.Compose([crop] + ([transforms.RandomHorizontalFlip()] if flip else [])
                             + [transforms.ToTensor(), transforms.Normalize(BLIP_MEAN, BLIP_STD)])
    std = torch.tensor(BLIP_STD).view(3, 1, 1)
    for seed in range(6):
        torch.manual_seed(seed)
        ours = proc(path)
        after_ours = torch.get_rng_state()
        torch.manual_seed(seed)
        want = ref(Image.open(path).convert("RGB"))
        assert torch.equal(after_ours, torch.get_rng_state())  # the same draws
        levels = ((ours - want) * std * 255).abs()
        assert levels.max() <= 2 + 1e-3 and levels.mean() < 0.1, seed
