"""RandomAugment as BLIP / LAVIS train their captioners: ``N`` ops drawn from a fixed list, each
applied with probability 0.5 at magnitude ``M`` (of 10), on uint8 image tensors ``[3, H, W]``.

How it differs from ``torchvision.transforms.v2.RandAugment``, which is why it is not used directly:

- the op list: LAVIS's BLIP recipe uses Identity, AutoContrast, Equalize, Brightness, Sharpness,
  ShearX/Y, TranslateX/Y and Rotate; torchvision's also has Color, Contrast, Posterize and Solarize;
- torchvision applies every drawn op; LAVIS applies each with probability 0.5;
- magnitudes: LAVIS maps ``M`` of 10 to shear 0.3·M/10 (a shear *factor*), rotation 30·M/10
  degrees, translation 10·M/10 *pixels* (not a fraction of the image) and enhance factors
  0.1 + 1.8·M/10 (so at M=5 Brightness and Sharpness are the identity, as in LAVIS); torchvision
  uses 31 bins and a fraction of the image size for translation;
- fill: LAVIS fills uncovered pixels with grey (128, 128, 128), torchvision with black.
- geometry: LAVIS (OpenCV) shears about the top-left corner, this module about the image centre;
  the amount of shear is the same.

Speed: the ops work on uint8 tensors, as the fast train transform of
:class:`~lavis.processors.blip_processors.BlipImageTrainProcessor` holds the image.
AutoContrast is PIL's look-up table applied with one gather; Equalize, Brightness and Sharpness
are torchvision's uint8 kernels (written to match PIL's ImageOps / ImageEnhance); an enhance
factor of exactly 1 returns the image untouched;
translations by whole pixels are a shifted copy (what bilinear sampling at whole-pixel offsets
gives); a shear shifts each row (or column) by its own fractional amount, one linear
interpolation along it (what bilinear sampling of a shear reduces to); rotations are one bilinear
``grid_sample`` about the centre with grey fill (the arithmetic of torchvision's ``affine`` on
tensors, without its extra mask channel).

Randomness comes from torch's global RNG, so ``torch.manual_seed`` makes it repeatable.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as nnf
from PIL import Image
from torchvision.transforms.v2 import functional as F

MAX_LEVEL = 10
GREY = 128
#: the op list of LAVIS's ``blip_image_train`` processor
BLIP_OPS: tuple[str, ...] = ("Identity", "AutoContrast", "Brightness", "Sharpness", "Equalize", "ShearX", "ShearY",
                             "TranslateX", "TranslateY", "Rotate")


def _signed(value: float) -> float:
    """``value`` with a random sign (torch's global RNG)."""
    return -value if torch.rand(()) < 0.5 else value


def _enhance_factor(level: float) -> float:
    return level / MAX_LEVEL * 1.8 + 0.1


def _enhance(kernel: Callable[[torch.Tensor, float], torch.Tensor]) -> Callable[[torch.Tensor, float], torch.Tensor]:
    def op(img: torch.Tensor, level: float) -> torch.Tensor:
        factor = _enhance_factor(level)
        return img if factor == 1.0 else kernel(img, factor)
    return op


def autocontrast(img: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.autocontrast`` (no cutoff) on uint8 ``[3, H, W]``: each channel's levels
    stretched to 0..255 by PIL's own look-up table (``int(level * scale + offset)``, in float64)."""
    flat = img.reshape(3, -1)
    levels = torch.arange(256, dtype=torch.float64)
    luts = []
    for low, high in zip(flat.amin(1).tolist(), flat.amax(1).tolist()):
        if high <= low:  # a one-level channel is left alone
            luts.append(levels)
            continue
        scale = 255.0 / (high - low)  # Python floats, as PIL computes them
        luts.append((levels * scale + (-low * scale)).trunc_().clamp_(0, 255))
    lut = torch.stack(luts)
    return torch.gather(lut.to(torch.uint8), 1, flat.long()).view(img.shape)


def warp(img: torch.Tensor, inverse: tuple[float, float, float, float]) -> torch.Tensor:
    """``img`` (uint8 ``[3, H, W]``) resampled bilinearly through a linear map about its centre:
    output pixel ``p`` (centred pixel coordinates, x right, y down) takes the input at
    ``[[a, b], [c, d]] @ p`` where ``inverse = (a, b, c, d)``; uncovered pixels are grey."""
    _, h, w = img.shape
    a, b, c, d = inverse
    # normalized grid coordinates (align_corners=False): gx = 2 u / w, gy = 2 v / h
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w)
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h)
    grid = torch.empty(1, h, w, 2)
    torch.add(xs * a, (ys * (b * h / w)).unsqueeze(1), out=grid[0, :, :, 0])
    torch.add(xs * (c * w / h), (ys * d).unsqueeze(1), out=grid[0, :, :, 1])
    centred = img.unsqueeze(0).to(torch.float32).sub_(GREY)  # zero padding of (img - grey) = grey fill
    out = nnf.grid_sample(centred, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    # the samples lie in [-128, 127]: + 128.5 and truncation round them to 0..255
    return out.add_(GREY + 0.5).to(torch.uint8)


def shear(img: torch.Tensor, factor: float, axis: str) -> torch.Tensor:
    """``img`` (uint8 ``[3, H, W]``) sheared about its centre: for ``axis="x"`` output pixel
    ``(u, v)`` (centred coordinates) takes the input at ``(u + factor * v, v)``, for ``"y"`` at
    ``(u, v + factor * u)``, by linear interpolation between the two nearest pixels along the axis,
    grey beyond the image. Bilinear sampling of a shear reduces to this: each row (column) is
    shifted by one fractional amount."""
    dim = 2 if axis == "x" else 1  # the dimension samples move along
    n, lines = img.shape[dim], img.shape[3 - dim]
    shift = (torch.arange(lines, dtype=torch.float64) + 0.5 - lines / 2) * factor
    whole = shift.floor()
    pad = int(whole.abs().max()) + 2
    padded = nnf.pad(img, (pad, pad) if dim == 2 else (0, 0, pad, pad), value=GREY)
    along, start, frac = torch.arange(n + 1), whole.long() + pad, (shift - whole).to(torch.float32)
    if dim == 2:
        index, frac = along.view(1, n + 1) + start.view(lines, 1), frac.view(lines, 1)
    else:
        index, frac = along.view(n + 1, 1) + start.view(1, lines), frac.view(1, lines)
    near = padded.gather(dim, index.expand(3, *index.shape)).to(torch.float32)  # near[k] and near[k + 1] surround k
    out = torch.empty(img.shape)
    torch.lerp(near.narrow(dim, 0, n), near.narrow(dim, 1, n), frac, out=out)
    return out.add_(0.5).to(torch.uint8)


def _shear(img: torch.Tensor, level: float, axis: str, sign: float | None = None) -> torch.Tensor:
    return shear(img, level / MAX_LEVEL * 0.3 * (sign if sign is not None else _signed(1.0)), axis)


def _translate(img: torch.Tensor, level: float, axis: str, sign: float | None = None) -> torch.Tensor:
    pixels = int(round(level / MAX_LEVEL * 10) * (sign if sign is not None else _signed(1.0)))
    dim = -1 if axis == "x" else -2
    size = img.shape[dim]
    out = torch.full_like(img, GREY)
    n = size - abs(pixels)
    if n > 0:  # out[k + pixels] = img[k]
        src, dst = (0, pixels) if pixels >= 0 else (-pixels, 0)
        out.narrow(dim, dst, n).copy_(img.narrow(dim, src, n))
    return out


def _rotate(img: torch.Tensor, level: float, sign: float | None = None) -> torch.Tensor:
    degrees = level / MAX_LEVEL * 30 * (sign if sign is not None else _signed(1.0))
    t = math.radians(degrees)
    # counter-clockwise on screen (y down): output p reads input R(t) p
    return warp(img, (math.cos(t), -math.sin(t), math.sin(t), math.cos(t)))


#: op name -> ``fn(uint8 image [3, H, W], level)``; geometric ops draw their sign from torch's global RNG
OPS: dict[str, Callable[..., torch.Tensor]] = {
    "Identity": lambda img, level: img,
    "AutoContrast": lambda img, level: autocontrast(img),
    "Equalize": lambda img, level: F.equalize(img),
    "Brightness": _enhance(F.adjust_brightness),
    "Sharpness": _enhance(F.adjust_sharpness),
    "ShearX": lambda img, level, sign=None: _shear(img, level, "x", sign),
    "ShearY": lambda img, level, sign=None: _shear(img, level, "y", sign),
    "TranslateX": lambda img, level, sign=None: _translate(img, level, "x", sign),
    "TranslateY": lambda img, level, sign=None: _translate(img, level, "y", sign),
    "Rotate": lambda img, level, sign=None: _rotate(img, level, sign),
}


class RandomAugment:
    """Draw ``num_ops`` ops (with replacement) from ``ops``; apply each with probability ``prob`` at
    magnitude ``magnitude`` (0..10). Takes a uint8 image tensor ``[3, H, W]`` (returned as one) or
    a PIL RGB image (returned as one); the size is unchanged.

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

    def __call__(self, img: torch.Tensor | Image.Image) -> torch.Tensor | Image.Image:
        if isinstance(img, Image.Image):
            return F.to_pil_image(self(F.pil_to_tensor(img)))
        if img.dtype != torch.uint8 or img.dim() != 3 or img.shape[0] != 3:
            raise TypeError(f"RandomAugment takes a uint8 RGB image [3, H, W] or a PIL image, got a {img.dtype} "
                            f"tensor of shape {tuple(img.shape)}")
        picks = torch.randint(len(self.ops), (self.num_ops,)).tolist() if self.ops else []
        for i in picks:
            if torch.rand(()) < self.prob:
                img = OPS[self.ops[i]](img, self.magnitude)
        return img

    def __repr__(self) -> str:
        return f"RandomAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, prob={self.prob}, ops={list(self.ops)})"


__all__ = ["BLIP_OPS", "OPS", "RandomAugment", "autocontrast", "shear", "warp"]
