"""What a quantization method is: a registered class that turns one linear layer's float weight and
the statistics of its calibration inputs into integer codes on a :class:`~lavis.quantization.grid.Grid`.

Register one with ``@registry.register_quantizer("name")`` in a file under ``lavis/quantization/``;
``quantization.method: name`` then selects it and ``quantization.options`` fills its ``Options``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from lavis.quantization.grid import Grid


@dataclass
class LayerStats:
    """Statistics of the inputs a linear layer saw during calibration (``in`` = its input features).

    ``tokens``: rows seen; ``abs_max`` / ``abs_mean`` [in]: per input channel; ``hessian`` [in, in]:
    the mean of ``x^T x`` over rows (collected when the method needs it); ``inputs`` [n, in]: up to
    ``max_rows`` of the rows themselves (when the method needs them).
    """

    tokens: int
    abs_max: torch.Tensor
    abs_mean: torch.Tensor
    hessian: torch.Tensor | None = None
    inputs: torch.Tensor | None = None


@dataclass
class QuantizedWeight:
    """A linear layer's weight on a grid: ``codes`` int8 [out, in], ``scale`` and ``zero`` (int8)
    [out, in / group]. With ``input_scale`` [in] the layer multiplies its input by it first, and
    ``dequantized / input_scale`` (per input column) approximates the float weight."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    input_scale: torch.Tensor | None = None


@dataclass
class NoOptions:
    """A method without settings."""


class QuantMethod:
    """Base of the registered methods.

    Class attributes: ``Options`` (a dataclass of the settings in ``quantization.options``),
    ``schemes`` (the ``quantization.scheme`` values the method supports), ``calibrated`` (whether
    it reads calibration statistics at all), ``needs`` (the statistics it reads besides
    ``abs_max``/``abs_mean``: ``"hessian"``, ``"inputs"``).
    """

    Options: ClassVar[type] = NoOptions
    schemes: ClassVar[tuple[str, ...]] = ()
    calibrated: ClassVar[bool] = True
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    def quantize_weight(self, weight: torch.Tensor, stats: LayerStats, grid: Grid) -> QuantizedWeight:
        """Codes for ``weight`` [out, in] given its layer's calibration ``stats``."""
        raise NotImplementedError(f"{type(self).__name__} must implement quantize_weight")
