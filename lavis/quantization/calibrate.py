"""Calibration: run samples through the float model and keep, for each linear layer to quantize,
the statistics of its inputs that the method needs (:class:`~lavis.quantization.base.LayerStats`).

All layers are observed in one pass of the float model (not block by block on the inputs of
already quantized blocks, as the GPTQ and AWQ papers do); docs/quantization.md says what that
costs.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from lavis.quantization.base import LayerStats


class InputStats:
    """Running statistics of the rows ``x`` [..., in] fed to one layer."""

    def __init__(self, in_features: int, hessian: bool, max_rows: int):
        self.tokens = 0
        self.abs_max = torch.zeros(in_features)
        self.abs_sum = torch.zeros(in_features, dtype=torch.float64)
        self.xtx = torch.zeros(in_features, in_features, dtype=torch.float64) if hessian else None
        self.max_rows = max_rows
        self.rows: list[torch.Tensor] = []
        self._kept = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float().cpu()
        self.tokens += x.shape[0]
        self.abs_max = torch.maximum(self.abs_max, x.abs().amax(0))
        self.abs_sum += x.abs().sum(0, dtype=torch.float64)
        if self.xtx is not None:
            x64 = x.double()
            self.xtx += x64.T @ x64
        if self._kept < self.max_rows:
            self.rows.append(x[: self.max_rows - self._kept])
            self._kept += self.rows[-1].shape[0]

    def result(self) -> LayerStats:
        n = max(self.tokens, 1)
        return LayerStats(
            tokens=self.tokens, abs_max=self.abs_max, abs_mean=(self.abs_sum / n).float(),
            hessian=None if self.xtx is None else (self.xtx / n).float(),
            inputs=torch.cat(self.rows) if self.rows else None,
        )


@contextlib.contextmanager
def observing(layers: dict[str, nn.Linear], hessian: bool, max_rows: int) -> Iterator[dict[str, InputStats]]:
    """Inside the block every call of a layer in ``layers`` adds its input to ``stats[name]``."""
    stats = {name: InputStats(layer.in_features, hessian, max_rows) for name, layer in layers.items()}
    handles = [layer.register_forward_pre_hook(lambda _m, args, s=stats[name]: s.add(args[0]))
               for name, layer in layers.items()]
    try:
        yield stats
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def collect_stats(layers: dict[str, nn.Linear], batches: Iterable[Any], step: Callable[[Any], Any],
                  hessian: bool, max_rows: int = 4096) -> dict[str, LayerStats]:
    """``step(batch)`` for each of ``batches`` (a forward pass of the model) with ``layers`` observed;
    raises when a layer saw no input (it is not on the path the calibration data takes)."""
    with observing(layers, hessian, max_rows) as stats:
        for batch in batches:
            step(batch)
    unseen = sorted(name for name, s in stats.items() if s.tokens == 0)
    if unseen:
        raise RuntimeError(f"calibration never reached {len(unseen)} layer(s) to quantize ({', '.join(unseen[:5])}, ...); "
                           "calibrate on data that uses them (images for the vision tower) or add them to "
                           "quantization.skip_layers")
    return {name: s.result() for name, s in stats.items()}
