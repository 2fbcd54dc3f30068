"""The weights of a TorchScript archive, read without running anything from it.

Some published checkpoints are TorchScript archives (``torch.jit.save``), OpenAI's CLIP files
among them. ``torch.load(weights_only=True)`` refuses them and ``torch.jit.load`` builds the
scripted program. This reader does neither: it unpickles the archive's ``data.pkl`` with an
unpickler that knows only tensors, storages and ordered dicts (every scripted class becomes an
inert attribute holder) and reads each storage's bytes from the zip. Code in the archive is
never run.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lavis.common.errors import CheckpointError

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "HalfStorage": torch.float16, "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stands for an object of a scripted class: keeps its attributes, nothing else."""

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.attributes = dict(state) if isinstance(state, dict) else {}


def _rebuild_tensor(flat: torch.Tensor, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> torch.Tensor:
    return flat.as_strided(size, stride, offset)


def _archive_prefix(archive: zipfile.ZipFile) -> str | None:
    for name in archive.namelist():
        if name.endswith("/data.pkl") and f"{name[:-len('data.pkl')]}constants.pkl" in archive.namelist():
            return name[: -len("data.pkl")]
    return None


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``data.pkl``, ``constants.pkl`` and ``code/``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        prefix = _archive_prefix(archive)
        return prefix is not None and any(n.startswith(prefix + "code/") for n in archive.namelist())


class _WeightsUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        import io

        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) == ("collections", "OrderedDict"):
            return dict
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only tensors and scripted modules are read")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        raw = self.archive.read(f"{self.prefix}data/{key}")
        flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if flat.numel() < int(numel):
            raise pickle.UnpicklingError(f"storage {key} holds {flat.numel()} values, {numel} expected")
        return flat


def _collect(obj: _ScriptObject, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for name, value in obj.attributes.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{name}.", out)


def read_torchscript_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of the scripted module in ``path`` by their dotted names (parameters and buffers,
    as ``torch.jit.load(path).state_dict()`` names them), in the dtypes they were saved in.

    Raises:
        CheckpointError: ``path`` is not a TorchScript archive, is damaged, or references objects
            other than tensors and scripted modules.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive)
            if prefix is None:
                raise CheckpointError(f"{path} is not a TorchScript archive (no data.pkl next to constants.pkl)")
            root = _WeightsUnpickler(archive.read(prefix + "data.pkl"), archive, prefix).load()
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, ValueError, EOFError) as e:
        raise CheckpointError(
            f"{path} is not a readable TorchScript archive ({type(e).__name__}: {e}). If it was downloaded, fetch it "
            "again."
        ) from e
    if not isinstance(root, _ScriptObject):
        raise CheckpointError(f"{path}: the TorchScript archive does not hold a module")
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", out)
    return out
