"""Pieces the BLIP archs share: checking the nested transformers config blocks and building the
text config that fits the BLIP tokenizer."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from lavis.common.errors import ConfigError


def check_config_fields(kind: str, given: Mapping[str, Any], config_cls: type) -> None:
    """Raise :class:`ConfigError` naming every key of ``model.<kind>`` that ``config_cls`` lacks."""
    valid = {f.name for f in dataclasses.fields(config_cls)}
    bad = sorted(set(given) - valid)
    if bad:
        raise ConfigError(
            [f"model.{kind}.{k}: not a field of transformers.{config_cls.__name__}" for k in bad]
            + [f"valid model.{kind} keys: {', '.join(sorted(valid))}"]
        )


def text_config_for_tokenizer(text_config: Mapping[str, Any], tokenizer: Any) -> dict[str, Any]:
    """``text_config`` with ``vocab_size`` defaulting to the tokenizer's length and the
    bos/pad/sep/eos ids taken from the tokenizer; a vocabulary smaller than the tokenizer is a
    :class:`ConfigError`."""
    out = dict(text_config)
    vocab_size = out.setdefault("vocab_size", len(tokenizer))
    if vocab_size < len(tokenizer):
        raise ConfigError(
            [f"model.text_config.vocab_size: {vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens "
             f"with [DEC] and [ENC]); set it to {len(tokenizer)} or remove it"]
        )
    out.update(
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        sep_token_id=tokenizer.sep_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    return out


def build_blip_encoders(
    vision_config: Mapping[str, Any], text_config: Mapping[str, Any], tokenizer: str
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The BLIP tokenizer, transformers' ``BlipVisionModel`` and ``BlipTextModel`` (no pooler,
    with cross-attention to the ViT's width) from the ``model.vision_config`` /
    ``model.text_config`` blocks; also returns the completed text config (for a decoder)."""
    from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

    from lavis.models.blip.tokenizer import load_blip_tokenizer

    check_config_fields("vision_config", vision_config, BlipVisionConfig)
    check_config_fields("text_config", text_config, BlipTextConfig)
    tok = load_blip_tokenizer(tokenizer)
    vision_cfg = BlipVisionConfig(**dict(vision_config))
    text_cfg = text_config_for_tokenizer(text_config, tok)
    text_cfg.update(encoder_hidden_size=vision_cfg.hidden_size, is_decoder=True)  # is_decoder: build cross-attention
    text_encoder = BlipTextModel(BlipTextConfig(**text_cfg), add_pooling_layer=False)
    return tok, BlipVisionModel(vision_cfg), text_encoder, text_cfg
