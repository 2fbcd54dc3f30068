"""RandomAugment (LAVIS's BLIP training augmentation) and the ``randaugment`` option of blip_image_train."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lavis.processors.blip_processors import BLIP_MEAN, BLIP_STD, BlipImageTrainProcessor
from lavis.processors.randaugment import BLIP_OPS, OPS, RandomAugment

GREY = 128


def textured(w: int = 20, h: int = 20) -> Image.Image:
    g = torch.Generator().manual_seed(1)
    return Image.fromarray((torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy())


def arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(int)


def test_the_op_list_is_lavis_blip_list() -> None:
    assert BLIP_OPS == ("Identity", "AutoContrast", "Brightness", "Sharpness", "Equalize", "ShearX", "ShearY",
                        "TranslateX", "TranslateY", "Rotate")
    aug = BlipImageTrainProcessor(randaugment=True).transform.transforms[2]
    assert isinstance(aug, RandomAugment) and (aug.num_ops, aug.magnitude, aug.prob, aug.ops) == (2, 5.0, 0.5, BLIP_OPS)


def test_default_processor_is_unchanged() -> None:
    proc = BlipImageTrainProcessor(image_size=32)
    assert not any(isinstance(t, RandomAugment) for t in proc.transform.transforms)
    assert [type(t).__name__ for t in proc.transform.transforms] == [
        "RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]


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
    assert all(r.size == img.size and r.mode == "RGB" for r in results)
    assert any((arr(r) != arr(img)).any() for r in results) and any((arr(r) == arr(img)).all() for r in results)


def test_each_op_applies_with_probability_prob() -> None:
    img = textured()
    assert (arr(RandomAugment(2, 5, ops=("TranslateX",), prob=0.0)(img)) == arr(img)).all()
    torch.manual_seed(0)
    always = RandomAugment(1, 5, ops=("TranslateX",), prob=1.0)
    assert all((arr(always(img)) != arr(img)).any() for _ in range(5))
    with pytest.raises(ValueError, match="unknown RandomAugment ops"):
        RandomAugment(ops=("Solarise",))


def test_identity_brightness_and_sharpness_at_magnitude_5_change_nothing() -> None:
    img = textured()
    for name in ("Identity", "Brightness", "Sharpness"):
        assert (arr(OPS[name](img, 5)) == arr(img)).all(), name  # LAVIS: factor 0.1 + 1.8 * 5/10 = 1.0
    assert arr(OPS["Brightness"](img, 10)).mean() > arr(img).mean() + 20  # factor 1.9


def test_autocontrast_and_equalize_stretch_a_dull_image() -> None:
    # 64 x 64 so that Equalize has enough pixels per level (like PIL, it leaves tiny images alone)
    dull = Image.fromarray(np.tile(np.linspace(100, 150, 64).astype(np.uint8), (64, 1))[..., None].repeat(3, 2))
    for name in ("AutoContrast", "Equalize"):
        out = arr(OPS[name](dull, 5))
        assert out.min() < 20 and out.max() > 235, name
        assert (np.diff(out[0, :, 0]) >= 0).all(), name  # the order of grey levels is kept


def test_translate_moves_by_magnitude_pixels_and_fills_grey() -> None:
    img = textured()
    right = arr(OPS["TranslateX"](img, 5, sign=1.0))
    assert (right[:, 5:] == arr(img)[:, :-5]).all() and (right[:, :5] == GREY).all()
    up = arr(OPS["TranslateY"](img, 5, sign=-1.0))
    assert (up[:-5] == arr(img)[5:]).all() and (up[-5:] == GREY).all()


def test_shear_slants_a_vertical_line_and_rotate_turns_about_the_centre() -> None:
    line = np.zeros((21, 21, 3), dtype=np.uint8)
    line[:, 10] = 255
    sheared = arr(OPS["ShearX"](Image.fromarray(line), 10, sign=1.0))  # factor 0.3
    cols = [int(np.argmax(sheared[r, :, 0])) for r in (0, 20)]
    assert abs(cols[0] - cols[1]) >= 5  # the line is slanted by about 0.3 * 20 pixels
    assert (sheared[10, 10] == 255).all()  # sheared about the centre
    rotated = arr(OPS["Rotate"](Image.fromarray(line), 10, sign=1.0))  # 30 degrees
    assert (rotated[10, 10] == 255).all() and (rotated[0, 0] == GREY).all()
    top = int(np.argmax(rotated[1, :, 0]))
    assert top != 10  # the top of the line moved sideways
