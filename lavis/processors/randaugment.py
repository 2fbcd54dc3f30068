"""RandomAugment as BLIP / LAVIS train their captioners: ``N`` ops drawn from a fixed list, each
applied with probability 0.5 at magnitude ``M`` (of 10), written on torchvision's transforms v2
functional ops.

How it differs from ``torchvision.transforms.v2.RandAugment``, which is why it is not used directly:

- the op list: LAVIS's BLIP recipe uses Identity, AutoContrast, Equalize, Brightness, Sharpness,
  ShearX/Y, TranslateX/Y and Rotate; torchvision's also has Color, Contrast, Posterize and Solarize;
- torchvision applies every drawn op; LAVIS applies each with probability 0.5;
- magnitudes: LAVIS maps ``M`` of 10 to shear 0.3·M/10 (a shear *factor*; here the angle
  ``atan(factor)``), rotation 30·M/10 degrees, translation 10·M/10 *pixels* (not a fraction of the
  image) and enhance factors 0.1 + 1.8·M/10 (so at M=5 Brightness and Sharpness are the identity,
  as in LAVIS); torchvision uses 31 bins and a fraction of the image size for translation;
- fill: LAVIS fills uncovered pixels with grey (128, 128, 128), torchvision with black.
- geometry: LAVIS (OpenCV) shears about the top-left corner, this module (torchvision) about the
  image centre; the amount of shear is the same.

Randomness comes from torch's global RNG, so ``torch.manual_seed`` makes it repeatable.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

MAX_LEVEL = 10
FILL = [128, 128, 128]
#: the op list of LAVIS's ``blip_image_train`` processor
BLIP_OPS: tuple[str, ...] = ("Identity", "AutoContrast", "Brightness", "Sharpness", "Equalize", "ShearX", "ShearY",
                             "TranslateX", "TranslateY", "Rotate")


def _signed(value: float) -> float:
    """``value`` with a random sign (torch's global RNG)."""
    return -value if torch.rand(()) < 0.5 else value


def _enhance_factor(level: float) -> float:
    return level / MAX_LEVEL * 1.8 + 0.1


def _shear(img: Image.Image, level: float, axis: str, sign: float | None = None) -> Image.Image:
    factor = level / MAX_LEVEL * 0.3 * (sign if sign is not None else _signed(1.0))
    angle = math.degrees(math.atan(factor))
    shear = [angle, 0.0] if axis == "x" else [0.0, angle]
    return F.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                    interpolation=InterpolationMode.BILINEAR, fill=FILL)


def _translate(img: Image.Image, level: float, axis: str, sign: float | None = None) -> Image.Image:
    pixels = round(level / MAX_LEVEL * 10) * (sign if sign is not None else _signed(1.0))
    shift = [int(pixels), 0] if axis == "x" else [0, int(pixels)]
    return F.affine(img, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                    interpolation=InterpolationMode.BILINEAR, fill=FILL)


def _rotate(img: Image.Image, level: float, sign: float | None = None) -> Image.Image:
    degrees = level / MAX_LEVEL * 30 * (sign if sign is not None else _signed(1.0))
    return F.rotate(img, degrees, interpolation=InterpolationMode.BILINEAR, fill=FILL)


#: op name -> ``fn(image, level)``; geometric ops draw their sign from torch's global RNG
OPS: dict[str, Callable[..., Image.Image]] = {
    "Identity": lambda img, level: img,
    "AutoContrast": lambda img, level: F.autocontrast(img),
    "Equalize": lambda img, level: F.equalize(img),
    "Brightness": lambda img, level: F.adjust_brightness(img, _enhance_factor(level)),
    "Sharpness": lambda img, level: F.adjust_sharpness(img, _enhance_factor(level)),
    "ShearX": lambda img, level, sign=None: _shear(img, level, "x", sign),
    "ShearY": lambda img, level, sign=None: _shear(img, level, "y", sign),
    "TranslateX": lambda img, level, sign=None: _translate(img, level, "x", sign),
    "TranslateY": lambda img, level, sign=None: _translate(img, level, "y", sign),
    "Rotate": lambda img, level, sign=None: _rotate(img, level, sign),
}


class RandomAugment:
    """Draw ``num_ops`` ops (with replacement) from ``ops``; apply each with probability ``prob`` at
    magnitude ``magnitude`` (0..10). Takes and returns a PIL image (size unchanged).

    LAVIS's BLIP training transform uses ``RandomAugment(2, 5)`` with :data:`BLIP_OPS`.
    """

    def __init__(self, num_ops: int = 2, magnitude: float = 5, ops: Sequence[str] = BLIP_OPS, prob: float = 0.5):
        unknown = [o for o in ops if o not in OPS]
        if unknown:
            raise ValueError(f"unknown RandomAugment ops {unknown}; valid: {', '.join(OPS)}")
        if int(num_ops) < 0 or not 0 <= magnitude <= MAX_LEVEL or not 0 <= prob <= 1:
            raise ValueError(f"need num_ops >= 0, 0 <= magnitude <= {MAX_LEVEL}, 0 <= prob <= 1; "
                             f"got {num_ops}, {magnitude}, {prob}")
        self.num_ops, self.magnitude, self.ops, self.prob = int(num_ops), float(magnitude), tuple(ops), float(prob)

    def __call__(self, img: Image.Image) -> Image.Image:
        picks = torch.randint(len(self.ops), (self.num_ops,)).tolist() if self.ops else []
        for i in picks:
            if torch.rand(()) < self.prob:
                img = OPS[self.ops[i]](img, self.magnitude)
        return img

    def __repr__(self) -> str:
        return f"RandomAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, prob={self.prob}, ops={list(self.ops)})"


__all__ = ["BLIP_OPS", "OPS", "RandomAugment"]
