"""Mixed precision for runners: which autocast dtype ``run.amp`` means on a device, and loss scaling."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ContextManager

import torch

from lavis.common.errors import ConfigError

__all__ = ["Precision", "cpu_supports_bf16", "resolve_precision"]


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 kernels (oneDNN with AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


@dataclass(frozen=True)
class Precision:
    """Resolved mixed precision: ``dtype`` is the autocast dtype or ``None`` (full precision)."""

    device_type: str
    dtype: torch.dtype | None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def needs_scaler(self) -> bool:
        """fp16 needs loss scaling to keep small gradients from flushing to zero."""
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> ContextManager[Any]:
        """The autocast context for forward passes (a no-op in full precision)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def make_scaler(self) -> "torch.amp.GradScaler | None":
        return torch.amp.GradScaler(self.device_type) if self.needs_scaler else None


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """What ``run.amp`` means on ``device``.

    - ``none``: full precision.
    - ``auto``: bf16 on a CPU with native bf16 kernels, full precision on other CPUs; bf16 on GPUs
      that support it, else fp16 with loss scaling.
    - ``bf16``: bf16 autocast (a GPU without bf16 support is an error).
    - ``fp16``: fp16 autocast with loss scaling; GPU only.
    """
    kind = device.type
    if amp == "none":
        return Precision(kind, None)
    if kind == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if amp == "auto":
            return Precision(kind, torch.bfloat16 if bf16_ok else torch.float16)
        if amp == "bf16":
            if not bf16_ok:
                raise ConfigError(["run.amp: this GPU does not support bf16; use run.amp=fp16 (or auto)"])
            return Precision(kind, torch.bfloat16)
        if amp == "fp16":
            return Precision(kind, torch.float16)
    else:
        if amp == "auto":
            return Precision(kind, torch.bfloat16 if kind == "cpu" and cpu_supports_bf16() else None)
        if amp == "bf16":
            return Precision(kind, torch.bfloat16)
        if amp == "fp16":
            raise ConfigError(
                [f"run.amp: fp16 needs a CUDA GPU (it relies on loss scaling); the run is on {kind}. "
                 "Use run.amp=bf16 (or auto) for mixed precision on CPU, or run.amp=none"]
            )
    raise ConfigError([f"run.amp: {amp!r} is not one of none, auto, bf16, fp16"])
