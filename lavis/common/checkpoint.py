"""Safe reading and atomic writing of weight files, and generator (RNG) states in a safe form.

This module knows files, not training: :func:`safe_torch_load` never runs code from a file,
:func:`load_state_dict_file` reads a state dict from ``.safetensors`` or a pickled ``.pth``/``.bin``,
:func:`atomic_save` writes one atomically, and :func:`get_rng_state`/:func:`set_rng_state` capture
generators in a form ``weights_only`` loading accepts. Callers: model weight loading
(:meth:`lavis.models.base_model.BaseModel.load_checkpoint_file`) and the training-checkpoint
format with resume (:mod:`lavis.runners.checkpointing`, which owns what a training checkpoint holds).
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

from lavis.common.errors import CheckpointError
from lavis.common.io import atomic_open

# modules whose globals torch's weights-only unpickler may accept in a checkpoint (tensors, storages,
# ordered dicts, dtypes, ...); a global outside them is what makes a pickle able to run code
_WEIGHTS_MODULES = ("torch", "collections", "builtins", "_codecs", "numpy")


class RecordedStateDict(dict):
    """A state dict (name -> tensor) read from a checkpoint that stores a ``model_record`` next to
    its ``model`` weights (e.g. a trained-only checkpoint, see :mod:`lavis.models.trained_only`)."""

    def __init__(self, data: Any, record: dict[str, Any]):
        super().__init__(data)
        self.record = record


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically: temporary file in the same folder, fsync, rename over ``path``."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def _pickle_streams(path: Path) -> list[bytes]:
    """The pickle bytes inside a checkpoint: ``*/data.pkl`` of a zip, else the whole file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return [z.read(n) for n in z.namelist() if n.endswith(".pkl")]
    return [path.read_bytes()]


def pickle_globals(path: str | os.PathLike) -> list[str]:
    """The ``module.name`` globals the pickles in ``path`` reference, found by reading the opcodes
    (nothing is run). Stops quietly at the first byte that is not a pickle opcode."""
    found: list[str] = []
    try:
        streams = _pickle_streams(Path(path))
    except (OSError, zipfile.BadZipFile, RuntimeError):
        return found
    for data in streams:
        buf = io.BytesIO(data)
        while buf.tell() < len(data):  # the legacy format holds several pickles in a row
            strings: list[str] = []
            start = buf.tell()
            try:
                for op, arg, _ in pickletools.genops(buf):
                    if op.name in ("GLOBAL", "INST"):
                        found.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str):
                        strings.append(arg)
            except Exception:  # not (or no longer) a pickle: what was read so far is what there is
                return found
            if buf.tell() == start:
                break
    return found


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` that never runs code from the file (``weights_only=True``), with clear errors.

    Raises:
        CheckpointError: the file is missing; it is truncated, corrupt or not a checkpoint at all;
            or it is a pickle that references code (globals other than torch's tensor types),
            which is refused without running it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        reason = " ".join(str(e).split())
        refs = pickle_globals(path)
        unsafe = [g for g in refs if g.split(".")[0] not in _WEIGHTS_MODULES]
        if not unsafe and "unsupported global" in reason.lower():  # torch refused a global it does not allow
            unsafe = refs
        if isinstance(e, pickle.UnpicklingError) and unsafe:
            raise CheckpointError(
                f"refusing to load {path}: it references {', '.join(sorted(set(unsafe))[:5])}, objects other than "
                "tensors and plain containers, which could run code when unpickled. Re-save it as a plain state "
                "dict or as safetensors from a trusted environment."
            ) from e
        if "WeightsUnpickler error:" in reason:  # torch's advice to load unsafely is not for a corrupt file
            reason = reason.split("WeightsUnpickler error:", 1)[1]
        cut = reason.find("Check the documentation")
        reason = (reason[:cut] if cut > 0 else reason)[-200:].strip() or type(e).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint: it is truncated or corrupt, or not a checkpoint at all "
            f"({type(e).__name__}: {reason}). If it was downloaded, fetch it again; else re-save it."
        ) from e


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors``, a pickled ``.pth``/``.bin`` (unwrapping ``"model"``, as a
    :class:`RecordedStateDict` when a ``model_record`` is stored next to it) or a TorchScript
    archive (its tensors, see :mod:`lavis.common.torchscript`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist. Give a local file; downloads of published weights "
            "go through the model zoo."
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    from lavis.common.torchscript import is_torchscript_archive, read_torchscript_state_dict

    if is_torchscript_archive(path):  # e.g. OpenAI's CLIP files: read without running the scripted code
        return read_torchscript_state_dict(path)
    weights, record = unwrap_state_dict(safe_torch_load(path), path)
    return RecordedStateDict(weights, record) if record is not None else weights


def unwrap_state_dict(obj: Any, path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None]:
    """The state dict in a loaded pickle (``obj["model"]`` in a training checkpoint, else ``obj``
    itself) and the ``model_record`` stored next to it, if any; :class:`CheckpointError` when it
    is not a mapping of names to tensors."""
    record = obj.get("model_record") if isinstance(obj, dict) else None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict (name -> tensor)")
    return obj, record if isinstance(record, dict) else None


# ---------------------------------------------------------------------------------------------
# random number generator states in a form ``weights_only=True`` can load
# ---------------------------------------------------------------------------------------------
def get_rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU and every CUDA device) global generators,
    as tensors, lists, ints and floats only, so that :func:`safe_torch_load` reads them back."""
    import random

    import numpy as np

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(version), [int(x) for x in internal], gauss],
        "numpy": [
            str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured (CUDA states only where CUDA is present)."""
    import random

    import numpy as np

    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((str(name), keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            torch.cuda.set_rng_state(cuda_states[0])
