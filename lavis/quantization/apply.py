"""Which layers of a model are quantized, and putting the result into the model.

Layers come from the model seam: every ``nn.Linear`` inside the parts named in
``quantization.targets`` (``language_model``, ``vision_tower``, ``projector``: properties of the
model class), less those matched by ``quantization.skip_layers``. The quantized weights are torchao
tensors: ``IntxUnpackedToInt8Tensor`` for weight-only schemes (int4 or int8 codes, one byte each,
dequantized in the matmul) and ``Int8Tensor`` with per-token dynamic int8 activations for ``w8a8``.
AWQ and SmoothQuant scale a layer's inputs; such a layer becomes a :class:`PreScaledLinear`.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Sequence

import torch
from torch import nn

from lavis.common.errors import ConfigError
from lavis.common.quant_schema import SCHEME_BITS
from lavis.quantization.base import QuantizedWeight
from lavis.quantization.grid import Grid


class PreScaledLinear(nn.Linear):
    """A linear layer that multiplies its input by ``input_scale`` [in] (a buffer) first: the
    inverse of the per-channel scales AWQ and SmoothQuant fold into the weight."""

    input_scale: torch.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias, device="meta")
        self.register_buffer("input_scale", torch.ones(in_features))

    @classmethod
    def like(cls, layer: nn.Linear) -> "PreScaledLinear":
        """A pre-scaled layer with ``layer``'s weight and bias (shared, not copied) and unit scales."""
        new = cls(layer.in_features, layer.out_features, bias=layer.bias is not None)
        new.weight, new.bias = layer.weight, layer.bias
        new.input_scale = torch.ones(layer.in_features, device=layer.weight.device)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x * self.input_scale.to(x.dtype), self.weight, self.bias)


def is_skipped(name: str, patterns: Sequence[str]) -> bool:
    """Whether the layer ``name`` (a full module name) matches one of ``patterns``: a glob over the
    full name or over its last components (``lm_head`` matches ``hf_model.lm_head``, ``*.mlp.*``
    every MLP layer)."""
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, f"*.{p}") for p in patterns)


def target_layers(model: nn.Module, parts: Sequence[str], skip: Sequence[str]) -> dict[str, nn.Linear]:
    """``{full name: layer}`` of the linear layers to quantize, in module order."""
    names = {id(m): n for n, m in model.named_modules()}
    found: dict[str, nn.Linear] = {}
    for part in parts:
        try:
            root = getattr(model, part)
        except AttributeError as e:
            raise ConfigError([f"quantization.targets: {type(model).__name__} has no {part} ({e}); quantization "
                               "works on models of the vision-language seam (lavis.models.vlm)"]) from None
        prefix = names[id(root)]
        for sub, layer in root.named_modules():
            full = f"{prefix}.{sub}" if sub else prefix
            if isinstance(layer, nn.Linear) and not is_skipped(full, skip):
                found[full] = layer
    return found


def check_groups(layers: dict[str, nn.Linear], grid: Grid) -> None:
    """Every layer's input features must split into whole groups."""
    bad = [f"{n} ({l.in_features} inputs)" for n, l in layers.items() if l.in_features % grid.group(l.in_features)]
    if bad:
        raise ConfigError([f"quantization.group_size: {grid.group_size} does not divide the inputs of "
                           f"{', '.join(bad[:5])}; pick a divisor, 0 (per channel), or skip those layers"])


def quantized_tensor(qw: QuantizedWeight, grid: Grid, scheme: str, dtype: torch.dtype) -> torch.Tensor:
    """The torchao tensor that holds ``qw`` and dequantizes to ``dtype``."""
    bits, activation_bits = SCHEME_BITS[scheme]
    cols = qw.codes.shape[1]
    if activation_bits == 8:
        from torchao.quantization import PerRow
        from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor, QuantizeTensorToInt8Kwargs

        return Int8Tensor(qw.codes, qw.scale.float(), [1, cols], dtype,
                          act_quant_kwargs=QuantizeTensorToInt8Kwargs(granularity=PerRow()))
    from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import IntxUnpackedToInt8Tensor

    return IntxUnpackedToInt8Tensor(qw.codes, qw.scale.to(dtype), qw.zero, getattr(torch, f"int{bits}"),
                                    (1, grid.group(cols)), dtype, None)


def replace_layer(model: nn.Module, name: str, layer: nn.Linear) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, layer)


def install(model: nn.Module, name: str, weight: torch.Tensor, input_scale: torch.Tensor | None) -> None:
    """Put ``weight`` (a torchao tensor) into layer ``name``; with ``input_scale`` the layer
    becomes a :class:`PreScaledLinear`."""
    layer = model.get_submodule(name)
    assert isinstance(layer, nn.Linear)
    if input_scale is not None:
        if not isinstance(layer, PreScaledLinear):
            layer = PreScaledLinear.like(layer)
            replace_layer(model, name, layer)
        layer.input_scale = input_scale.to(layer.weight.device, torch.float32)
    layer.weight = nn.Parameter(weight.to(layer.weight.device), requires_grad=False)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers as stored (a quantized weight counts its codes,
    scales and zero points)."""
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        names: Any = getattr(t, "tensor_data_names", None)
        if names:
            optional = getattr(t, "optional_tensor_data_names", None) or []
            parts = [getattr(t, n, None) for n in list(names) + list(optional)]
            total += sum(p.numel() * p.element_size() for p in parts if isinstance(p, torch.Tensor))
        else:
            total += t.numel() * t.element_size()
    return total
