"""The registered methods: round to nearest (``rtn``), ``gptq``, ``awq`` and ``smoothquant``.

Each works on one linear layer at a time from statistics of its calibration inputs (see
:mod:`lavis.quantization.calibrate`); torchao stores and runs the result (see
:mod:`lavis.quantization.apply`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lavis.common.registry import registry
from lavis.quantization.base import LayerStats, QuantizedWeight, QuantMethod
from lavis.quantization.grid import Grid


def _rtn(weight: torch.Tensor, grid: Grid, input_scale: torch.Tensor | None = None) -> QuantizedWeight:
    scale, zero = grid.fit(weight)
    return QuantizedWeight(grid.quantize(weight, scale, zero), scale, zero, input_scale)


@registry.register_quantizer("rtn")
class RoundToNearest(QuantMethod):
    """Each weight rounded to the nearest point of its group's min/max grid; needs no calibration."""

    schemes = ("w4a16", "w8a16", "w8a8")
    calibrated = False

    def quantize_weight(self, weight: torch.Tensor, stats: LayerStats, grid: Grid) -> QuantizedWeight:
        return _rtn(weight, grid)


@dataclass
class GptqOptions:
    damp: float = 0.01  # added to the Hessian's diagonal, as a fraction of its mean
    block_size: int = 128  # columns updated together (rounded to a multiple of the group size)


@registry.register_quantizer("gptq")
class Gptq(QuantMethod):
    """GPTQ (Frantar et al., 2022): columns are rounded one at a time and the rounding error of
    each is spread over the columns not yet rounded, weighted by the inverse Hessian ``E[x x^T]``
    of the layer's inputs, so that the layer's output on calibration inputs changes least. A
    group's scale is fitted when its first column is reached, from the weights as updated so far."""

    Options = GptqOptions
    schemes = ("w4a16", "w8a16")
    needs = frozenset({"hessian"})

    def quantize_weight(self, weight: torch.Tensor, stats: LayerStats, grid: Grid) -> QuantizedWeight:
        assert stats.hessian is not None
        opts: GptqOptions = self.options
        w = weight.detach().float().clone()
        out, cols = w.shape
        h = stats.hessian.double().clone()
        dead = torch.diagonal(h) == 0  # inputs that were always zero: their weights do not matter
        h[dead, dead] = 1.0
        w[:, dead] = 0.0
        h += opts.damp * torch.diagonal(h).mean() * torch.eye(cols, dtype=h.dtype)
        # upper Cholesky factor of H^-1: row i holds what rounding column i does to columns > i
        hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()
        g = grid.group(cols)
        block = g * max(1, opts.block_size // g)
        codes = torch.empty(out, cols, dtype=torch.int8)
        scales, zeros = [], []
        for start in range(0, cols, block):
            end = min(start + block, cols)
            w_blk, hinv_blk = w[:, start:end].clone(), hinv[start:end, start:end]
            err = torch.zeros_like(w_blk)
            for i in range(end - start):
                if (start + i) % g == 0:
                    scale, zero = grid.fit(w_blk[:, i:i + g])
                    scales.append(scale)
                    zeros.append(zero)
                q = grid.quantize(w_blk[:, i:i + 1], scale, zero)
                codes[:, start + i] = q[:, 0]
                e = (w_blk[:, i] - grid.dequantize(q, scale, zero)[:, 0]) / hinv_blk[i, i]
                w_blk[:, i:] -= e[:, None] * hinv_blk[i, i:][None, :]
                err[:, i] = e
            w[:, end:] -= err @ hinv[start:end, end:]
        return QuantizedWeight(codes, torch.cat(scales, 1), torch.cat(zeros, 1))


@dataclass
class AwqOptions:
    grid_points: int = 20  # exponents 0, 1/n, ..., (n-1)/n tried for the per-channel scales


@registry.register_quantizer("awq")
class Awq(QuantMethod):
    """AWQ (Lin et al., 2023): input channels with large mean activations matter most, so their
    weights are scaled up by ``s = mean|x|^a`` before rounding (and the inputs down by ``1/s``); the
    exponent ``a`` is searched on the calibration inputs for the smallest output error. ``a = 0``
    is plain round to nearest, so on calibration data AWQ is never worse than RTN."""

    Options = AwqOptions
    schemes = ("w4a16", "w8a16")
    needs = frozenset({"inputs"})

    def quantize_weight(self, weight: torch.Tensor, stats: LayerStats, grid: Grid) -> QuantizedWeight:
        assert stats.inputs is not None
        w, x = weight.detach().float(), stats.inputs.float()
        reference = x @ w.T
        importance = stats.abs_mean.float().clamp(min=1e-5)
        best: tuple[float, torch.Tensor] | None = None
        n = self.options.grid_points
        for k in range(n):
            s = importance ** (k / n)
            s = s / (s.max() * s.min()).sqrt()
            error = ((x / s) @ grid.round_trip(w * s).T - reference).pow(2).mean().item()
            if best is None or error < best[0]:
                best = (error, s)
        assert best is not None
        s = best[1]
        return _rtn(w * s, grid, input_scale=1.0 / s)


@dataclass
class SmoothQuantOptions:
    alpha: float = 0.5  # migration strength: 0 keeps activations as they are, 1 moves all range to the weights


@registry.register_quantizer("smoothquant")
class SmoothQuant(QuantMethod):
    """SmoothQuant (Xiao et al., 2022) for W8A8: activation outliers sit in few input channels, so
    those channels are divided by ``s = max|x|^alpha / max|w|^(1 - alpha)`` (and the weights'
    columns multiplied by it), which makes both easy to round to int8; activations are then
    quantized per token at run time."""

    Options = SmoothQuantOptions
    schemes = ("w8a8",)

    def quantize_weight(self, weight: torch.Tensor, stats: LayerStats, grid: Grid) -> QuantizedWeight:
        w = weight.detach().float()
        alpha = self.options.alpha
        w_max = w.abs().amax(0).clamp(min=1e-5)
        s = (stats.abs_max.float().clamp(min=1e-5) ** alpha / w_max ** (1 - alpha)).clamp(min=1e-5)
        return _rtn(w * s, grid, input_scale=1.0 / s)
