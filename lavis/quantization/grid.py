"""The integer grid a weight is rounded onto: bits, group size, symmetric or asymmetric.

Codes, scales and zero points follow torchao's affine convention, so that they can be stored in
torchao's quantized tensors unchanged: ``dequantized = (code - zero_point) * scale`` with codes in
``[-2**(bits-1), 2**(bits-1) - 1]`` and one scale (and zero point) per group of ``group_size``
consecutive input features of one output row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: scales are clamped to at least this, so that an all-zero group quantizes to zeros
MIN_SCALE = torch.finfo(torch.float32).eps


@dataclass(frozen=True)
class Grid:
    """``bits``: 4 or 8; ``group_size``: input features per scale, 0 for one scale per output
    channel; ``symmetric``: zero points fixed at 0 (else fitted per group)."""

    bits: int
    group_size: int = 0
    symmetric: bool = True

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1))

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def group(self, in_features: int) -> int:
        """Input features per group for a layer with ``in_features`` inputs."""
        return self.group_size or in_features

    def fit(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero point [out, in / group] that cover each group's range of ``w`` [out, in]
        (round to nearest). Zero points are integers stored as int8."""
        out, cols = w.shape
        groups = w.float().reshape(out, cols // self.group(cols), self.group(cols))
        if self.symmetric:
            scale = groups.abs().amax(-1) / ((self.qmax - self.qmin) / 2)
            zero = torch.zeros_like(scale)
        else:
            lo, hi = groups.amin(-1).clamp(max=0), groups.amax(-1).clamp(min=0)
            scale = (hi - lo) / (self.qmax - self.qmin)
            zero = (self.qmin - torch.round(lo / scale.clamp(min=MIN_SCALE))).clamp(self.qmin, self.qmax)
        return scale.clamp(min=MIN_SCALE), zero.to(torch.int8)

    def _expand(self, t: torch.Tensor, cols: int) -> torch.Tensor:
        return t.float().repeat_interleave(cols // t.shape[1], dim=1)

    def quantize(self, w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        """Int8 codes [out, in] of ``w`` on the grid given by ``scale`` and ``zero`` [out, in / group]."""
        cols = w.shape[1]
        q = torch.round(w.float() / self._expand(scale, cols)) + self._expand(zero, cols)
        return q.clamp(self.qmin, self.qmax).to(torch.int8)

    def dequantize(self, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        """Float values [out, in] of ``codes``."""
        cols = codes.shape[1]
        return (codes.float() - self._expand(zero, cols)) * self._expand(scale, cols)

    def round_trip(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` rounded to the nearest point of its own fitted grid (RTN), as floats."""
        scale, zero = self.fit(w)
        return self.dequantize(self.quantize(w, scale, zero), scale, zero)
