"""Saving and loading quantized models: one safetensors file whose metadata records the
quantization (settings and quantized layers) next to torchao's description of its tensors.

``BaseModel.load_checkpoint_file`` recognises such a file, so ``load_model(..., checkpoint=path)``
and a config's ``model.finetuned: path`` load a quantized model like any other weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lavis.common.errors import CheckpointError

#: metadata key of the quantization record
RECORD_KEY = "lavis_quantization"


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The quantization record of a weight file, or ``None`` for a file without one."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    text = metadata.get(RECORD_KEY)
    return None if text is None else json.loads(text)


def save_quantized(model: nn.Module, record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``model``'s state dict (torchao tensors flattened into plain ones) with ``record``,
    atomically."""
    from safetensors.torch import save_file
    from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    seen: dict[int, str] = {}
    for key, value in list(state.items()):  # tied weights (embeddings = LM head) are stored once
        if type(value) is torch.Tensor:
            ptr = value.untyped_storage().data_ptr()
            if ptr in seen and state[seen[ptr]].shape == value.shape:
                state[key] = value.clone()
            seen.setdefault(ptr, key)
    data, metadata = flatten_tensor_state_dict(state)
    metadata[RECORD_KEY] = json.dumps(record)
    tmp = path.with_name(path.name + ".partial")
    save_file({k: v.contiguous() for k, v in data.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def quantized_state(model: nn.Module, path: str | os.PathLike, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of the quantized file ``path`` with its torchao tensors rebuilt, after giving
    ``model`` the quantized layers (torchao weights, pre-scaled inputs) that the state dict fills."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

    from lavis.quantization.apply import install

    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata() or {})
    metadata.pop(RECORD_KEY)
    state, leftover = unflatten_tensor_state_dict(load_file(str(path)), metadata)
    state.update(leftover)
    for name, pre_scaled in record["layers"].items():
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            raise CheckpointError(f"{path} quantizes layer {name}, which {type(model).__name__} does not have; "
                                  "load it into the model it was quantized from") from None
        weight = state.get(f"{name}.weight")
        if not isinstance(layer, nn.Linear) or weight is None or type(weight) is torch.Tensor:
            raise CheckpointError(f"{path}: layer {name} is recorded as quantized but the file has no quantized "
                                  "weight for it; the file is damaged, write it again with quantize.py")
        install(model, name, weight, torch.ones(layer.in_features) if pre_scaled else None)
    return state
