"""Adapters of the VLM seam: LoRA through peft."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

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
