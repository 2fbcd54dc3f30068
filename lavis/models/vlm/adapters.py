"""Adapters of the VLM seam: LoRA through peft, and the merging of a run's saved adapters."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch

from lavis.common.errors import ConfigError

if TYPE_CHECKING:
    from lavis.models.vlm.base import HFVisionLanguageModel

LORA_KEYS = ("r", "alpha", "dropout", "target_modules")


def apply_lora(model: "HFVisionLanguageModel", cfg: Mapping[str, Any]) -> None:
    """Wrap ``model.hf_model`` with peft LoRA adapters (recorded in ``model.lora_config``); only
    the adapters stay trainable.

    ``cfg``: ``r`` (rank, default 8), ``alpha`` (default 16), ``dropout`` (default 0.0) and
    ``target_modules`` (``auto``, the default: :attr:`~HFVisionLanguageModel.default_lora_target`;
    or a list of module names).
    """
    from peft import LoraConfig, get_peft_model

    unknown = sorted(set(cfg) - set(LORA_KEYS))
    if unknown:
        raise ConfigError([f"model.lora.{k}: unknown key; valid keys: {', '.join(LORA_KEYS)}" for k in unknown])
    targets = cfg.get("target_modules", "auto")
    if targets == "auto":
        targets = model.default_lora_target
    elif isinstance(targets, str) or not targets:
        raise ConfigError([f"model.lora.target_modules: 'auto' or a non-empty list of module names, got {targets!r}"])
    config = LoraConfig(r=int(cfg.get("r", 8)), lora_alpha=int(cfg.get("alpha", 16)),
                        lora_dropout=float(cfg.get("dropout", 0.0)), target_modules=list(targets))
    model.hf_model = get_peft_model(model.hf_model, config)
    model.lora_config = dict(cfg)


def unwrapped_key(key: str) -> str:
    """A state-dict key without peft's LoRA wrapping, as the model names it without adapters."""
    return key.replace("hf_model.base_model.model.", "hf_model.", 1).replace(".base_layer.", ".")


@contextlib.contextmanager
def merged_on_load(model: "HFVisionLanguageModel", weights: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Around loading trained-only ``weights``: when they hold LoRA adapters and ``model`` has
    none, load the run's base, add adapters with the run's settings, and merge them into the
    weights once loaded; otherwise nothing."""
    from lavis.models.trained_only import record_of

    record = record_of(weights) or {}
    lora = (record.get("model") or {}).get("lora")
    if not isinstance(lora, Mapping) or model.has_lora or not any(".lora_" in k for k in weights):
        yield
        return
    model.load_base(record)
    apply_lora(model, lora)
    yield
    model.hf_model = model.hf_model.merge_and_unload()
    model.lora_config = None
