"""Quantize a model in place: pick the layers, calibrate, run the method, install torchao tensors."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from lavis.common.errors import ConfigError
from lavis.common.quant_schema import SCHEME_BITS, QuantizationConfig
from lavis.common.registry import registry
from lavis.quantization.apply import check_groups, install, quantized_tensor, target_layers
from lavis.quantization.base import LayerStats
from lavis.quantization.calibrate import collect_stats
from lavis.quantization.grid import Grid


def grid_of(q: QuantizationConfig) -> Grid:
    return Grid(SCHEME_BITS[q.scheme][0], q.group_size, q.symmetric)


def record_of(q: QuantizationConfig, layers: dict[str, bool]) -> dict[str, Any]:
    """What a saved quantized model records: the settings and ``layers`` (name -> pre-scaled)."""
    import torchao

    return {"method": q.method, "scheme": q.scheme, "group_size": q.group_size, "symmetric": q.symmetric,
            "targets": list(q.targets), "skip_layers": list(q.skip_layers), "options": dict(q.options),
            "layers": layers, "torchao": torchao.__version__}


@torch.no_grad()
def quantize_model(model: nn.Module, q: QuantizationConfig, batches: Iterable[Any] | None = None,
                   step: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Quantize ``model``'s target layers in place with ``q.method``; returns the record that
    :func:`lavis.quantization.storage.save_quantized` stores.

    ``batches`` and ``step`` (one forward pass of the float model per batch) calibrate methods that
    read input statistics; RTN needs neither.
    """
    try:
        import torchao  # noqa: F401  (stores and runs the quantized weights)
    except ImportError as e:
        raise ImportError("quantization stores its weights as torchao tensors; install torchao (the `quant` extra "
                          "of lavis, see docs/quantization.md)") from e
    method_cls = registry.get_quantizer_class(q.method)
    method = method_cls(method_cls.Options(**q.options))
    if getattr(model, "has_lora", False):
        raise ConfigError(["quantization: the model has LoRA adapters; merge them into its weights first "
                           "(docs/post_training.md, 'Merging LoRA adapters') or build it without model.lora"])
    grid = grid_of(q)
    layers = target_layers(model, q.targets, q.skip_layers)
    done = [name for name, layer in layers.items() if type(layer.weight.data) is not torch.Tensor]
    if done:
        raise ConfigError([f"quantization: {len(done)} target layer(s) are quantized already ({', '.join(done[:3])}, ...); "
                           "quantize the float model"])
    check_groups(layers, grid)
    if method_cls.calibrated:
        if batches is None or step is None:
            raise ValueError(f"{q.method} needs calibration batches and a step that runs the model on one")
        stats = collect_stats(layers, batches, step, hessian="hessian" in method_cls.needs,
                              max_rows=q.calibration.max_rows if "inputs" in method_cls.needs else 0)
    else:
        stats = {name: LayerStats(0, torch.zeros(layer.in_features), torch.zeros(layer.in_features))
                 for name, layer in layers.items()}
    pre_scaled: dict[str, bool] = {}
    for name, layer in layers.items():
        qw = method.quantize_weight(layer.weight, stats[name], grid)
        install(model, name, quantized_tensor(qw, grid, q.scheme, layer.weight.dtype), qw.input_scale)
        pre_scaled[name] = qw.input_scale is not None
    return record_of(q, pre_scaled)
