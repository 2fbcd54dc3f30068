"""RandomAugment (LAVIS's BLIP training augmentation) on uint8 tensors, each op against a
reference (PIL's ImageOps / ImageEnhance / Image.transform) or known values, and the
``randaugment`` option of blip_image_train."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from torchvision.transforms.v2 import functional as F

from lavis.processors.blip_processors import BLIP_MEAN, BLIP_STD, BlipImageTrainProcessor
from lavis.processors.randaugment import BLIP_OPS, OPS, RandomAugment

GREY = 128


def textured(w: int = 20, h: int = 20) -> Image.Image:
    g = torch.Generator().manual_seed(1)
    return Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy())


def photo(w: int = 96, h: int = 72) -> Image.Image:
    """Smooth gradients with a few sharp shapes and a narrow range of levels, like a dull photo."""
    rows = np.linspace(0, 1, h)[:, None]
    cols = np.linspace(0, 1, w)[None, :]
    rgb = np.stack([60 + 90 * rows * cols, 80 + 50 * cols + 0 * rows, 70 + 60 * rows + 0 * cols], -1)
    rgb[h // 4: h // 2, w // 5: w // 2] = (150, 40, 200)
    rgb[h // 2:, 3 * w // 5:] = (20, 180, 90)
    return Image.fromarray(rgb.astype(np.uint8))


def arr(img: Image.Image | torch.Tensor) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        return img.permute(1, 2, 0).numpy().astype(int)
    return np.asarray(img).astype(int)


def tensor(img: Image.Image) -> torch.Tensor:
    return F.pil_to_tensor(img)


def test_the_op_list_is_lavis_blip_list() -> None:
    assert BLIP_OPS == ("Identity", "AutoContrast", "Brightness", "Sharpness", "Equalize", "ShearX", "ShearY",
                        "TranslateX", "TranslateY", "Rotate")
    aug = BlipImageTrainProcessor(randaugment=True).transform.transforms[2]
    assert isinstance(aug, RandomAugment) and (aug.num_ops, aug.magnitude, aug.prob, aug.ops) == (2, 5.0, 0.5, BLIP_OPS)


def test_default_processor_is_unchanged() -> None:
    proc = BlipImageTrainProcessor(image_size=32)
    assert not any(isinstance(t, RandomAugment) for t in proc.transform.transforms)
    assert [type(t).__name__ for t in proc.transform.transforms] == [
        "RandomResizedCrop", "RandomHorizontalFlip", "NormalizeUint8"]


def test_deterministic_under_a_seed_with_the_range_and_size_kept() -> None:
    proc = BlipImageTrainProcessor(image_size=24, randaugment=True)
    img = textured(40, 30)
    outs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outs.append(torch.stack([proc(img) for _ in range(4)]))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    assert outs[0].shape == (4, 3, 24, 24)
    low = (0 - torch.tensor(BLIP_MEAN)) / torch.tensor(BLIP_STD)
    high = (1 - torch.tensor(BLIP_MEAN)) / torch.tensor(BLIP_STD)
    for out in outs:
        assert (out >= low.view(1, 3, 1, 1) - 1e-5).all() and (out <= high.view(1, 3, 1, 1) + 1e-5).all()
    aug = RandomAugment(2, 5)
    torch.manual_seed(3)
    results = [aug(img) for _ in range(20)]
    assert all(r.size == img.size and r.mode == "RGB" for r in results)  # a PIL image in, a PIL image out
    assert any((arr(r) != arr(img)).any() for r in results) and any((arr(r) == arr(img)).all() for r in results)
    torch.manual_seed(3)
    assert all((arr(aug(tensor(img))) == arr(r)).all() for r in results)  # the same draws and pixels on tensors
    with pytest.raises(TypeError, match="uint8 RGB image"):
        aug(torch.zeros(3, 8, 8))


def test_each_op_applies_with_probability_prob() -> None:
    img = textured()
    assert (arr(RandomAugment(2, 5, ops=("TranslateX",), prob=0.0)(img)) == arr(img)).all()
    torch.manual_seed(0)
    always = RandomAugment(1, 5, ops=("TranslateX",), prob=1.0)
    assert all((arr(always(img)) != arr(img)).any() for _ in range(5))
    with pytest.raises(ValueError, match="unknown RandomAugment ops"):
        RandomAugment(ops=("Solarise",))


def test_identity_brightness_and_sharpness_at_magnitude_5_change_nothing() -> None:
    img = tensor(textured())
    for name in ("Identity", "Brightness", "Sharpness"):
        assert OPS[name](img, 5) is img, name  # LAVIS: factor 0.1 + 1.8 * 5/10 = 1.0, nothing computed
    assert arr(OPS["Brightness"](img, 10)).mean() > arr(img).mean() + 20  # factor 1.9


@pytest.mark.parametrize("level", [2, 8, 10])
def test_enhance_ops_match_pil_imageenhance(level: int) -> None:
    img = photo()
    factor = level / 10 * 1.8 + 0.1
    for name, ref in (("Brightness", ImageEnhance.Brightness), ("Sharpness", ImageEnhance.Sharpness)):
        diff = np.abs(arr(OPS[name](tensor(img), level)) - arr(ref(img).enhance(factor)))
        assert diff.max() <= 1, name  # torchvision's uint8 kernels round where PIL truncates


def test_autocontrast_and_equalize_match_pil_imageops() -> None:
    img = photo()
    assert (arr(OPS["AutoContrast"](tensor(img), 5)) == arr(ImageOps.autocontrast(img))).all()
    one_level = Image.new("RGB", (8, 8), (7, 7, 7))
    assert (arr(OPS["AutoContrast"](tensor(one_level), 5)) == 7).all()
    assert (arr(OPS["Equalize"](tensor(img), 5)) == arr(ImageOps.equalize(img))).all()
    strided = tensor(img).permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels-last, as decoded
    assert (arr(OPS["AutoContrast"](strided, 5)) == arr(OPS["AutoContrast"](tensor(img), 5))).all()


def test_autocontrast_and_equalize_stretch_a_dull_image() -> None:
    # 64 x 64 so that Equalize has enough pixels per level (like PIL, it leaves tiny images alone)
    dull = Image.fromarray(np.tile(np.linspace(100, 150, 64).astype(np.uint8), (64, 1))[..., None].repeat(3, 2))
    for name in ("AutoContrast", "Equalize"):
        out = arr(OPS[name](tensor(dull), 5))
        assert out.min() < 20 and out.max() > 235, name
        assert (np.diff(out[0, :, 0]) >= 0).all(), name  # the order of grey levels is kept


def test_translate_moves_by_magnitude_pixels_and_fills_grey() -> None:
    img = tensor(textured())
    right = arr(OPS["TranslateX"](img, 5, sign=1.0))
    assert (right[:, 5:] == arr(img)[:, :-5]).all() and (right[:, :5] == GREY).all()
    up = arr(OPS["TranslateY"](img, 5, sign=-1.0))
    assert (up[:-5] == arr(img)[5:]).all() and (up[-5:] == GREY).all()


def test_shear_slants_a_vertical_line_and_rotate_turns_about_the_centre() -> None:
    line = np.zeros((21, 21, 3), dtype=np.uint8)
    line[:, 10] = 255
    sheared = arr(OPS["ShearX"](tensor(Image.fromarray(line)), 10, sign=1.0))  # factor 0.3
    cols = [int(np.argmax(sheared[r, :, 0])) for r in (0, 20)]
    assert abs(cols[0] - cols[1]) >= 5  # the line is slanted by about 0.3 * 20 pixels
    assert (sheared[10, 10] == 255).all()  # sheared about the centre
    rotated = arr(OPS["Rotate"](tensor(Image.fromarray(line)), 10, sign=1.0))  # 30 degrees
    assert (rotated[10, 10] == 255).all() and (rotated[0, 0] == GREY).all()
    top = int(np.argmax(rotated[1, :, 0]))
    assert top != 10  # the top of the line moved sideways


def pil_affine(img: Image.Image, m: tuple[float, float, float, float]) -> Image.Image:
    """The reference: PIL's bilinear affine transform, output pixel centre p (centred coordinates)
    reading the input at ``m @ p``, grey fill."""
    a, b, c, d = m
    w, h = img.size
    data = (a, b, w / 2 - a * w / 2 - b * h / 2, c, d, h / 2 - c * w / 2 - d * h / 2)
    return img.transform(img.size, Image.AFFINE, data, Image.BILINEAR, fillcolor=(GREY,) * 3)


def source_margin(w: int, h: int, m: tuple[float, float, float, float]) -> np.ndarray:
    """How far inside the image (in pixels) each output pixel's source lies; negative: outside."""
    a, b, c, d = m
    u = np.arange(w)[None, :] + 0.5 - w / 2
    v = np.arange(h)[:, None] + 0.5 - h / 2
    x, y = a * u + b * v + w / 2, c * u + d * v + h / 2
    return np.minimum(np.minimum(x, w - x), np.minimum(y, h - y))


@pytest.mark.parametrize("name, sign", [("ShearX", 1.0), ("ShearX", -1.0), ("ShearY", 1.0), ("ShearY", -1.0),
                                        ("Rotate", 1.0), ("Rotate", -1.0)])
def test_shear_and_rotate_match_pil_bilinear_affine(name: str, sign: float) -> None:
    img = photo()
    if name == "Rotate":
        t = math.radians(15 * sign)  # level 5: 15 degrees, counter-clockwise on screen for +
        m = (math.cos(t), -math.sin(t), math.sin(t), math.cos(t))
    else:
        m = (1.0, 0.15 * sign, 0.0, 1.0) if name == "ShearX" else (1.0, 0.0, 0.15 * sign, 1.0)
    ours, ref = arr(OPS[name](tensor(img), 5, sign=sign)), arr(pil_affine(img, m))
    margin = source_margin(*img.size, m)
    inside, outside = margin > 1, margin < -1
    assert inside.mean() > 0.6 and outside.any()
    assert np.abs(ours - ref)[inside].max() <= 1  # the same bilinear samples
    assert (ours[outside] == GREY).all() and (ref[outside] == GREY).all()
    # only the one-pixel band at the border of the image differs: ours blends it with the grey fill
