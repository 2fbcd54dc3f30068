"""Pieces the BLIP archs share: checking the nested transformers config blocks and building the
text config that fits the BLIP tokenizer."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from torch import nn

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



def caption_labels(input_ids: Any, pad_token_id: int, prompt_length: int, prompt_rows: Any = None) -> Any:
    """Language-modelling labels [B, L] for decoder ids [B, L]: padding and the first
    ``prompt_length`` positions (``[DEC]`` and the prompt) set to -100 (not scored); with
    ``prompt_rows`` (a bool [B]) the prompt is masked only on those rows."""
    labels = input_ids.masked_fill(input_ids == pad_token_id, -100)
    if prompt_rows is None:
        labels[:, :prompt_length] = -100
    else:
        labels[prompt_rows, :prompt_length] = -100
    return labels


def smoothed_token_losses(logits: Any, labels: Any, label_smoothing: float) -> Any:
    """Label-smoothed cross entropy per token [B, T] (0 where ``labels`` is -100) of next-token
    ``logits`` [B, T, V] and their (already shifted) ``labels`` [B, T], in fp32."""
    import torch.nn.functional as F

    return F.cross_entropy(
        logits.transpose(1, 2).float(), labels, ignore_index=-100, label_smoothing=label_smoothing, reduction="none"
    )


def tie_encoder_to_decoder(encoder: Any, decoder_bert: Any, skip: str = "attention") -> list[str]:
    """Make the text ``encoder`` use the parameters of ``decoder_bert`` (the BERT of a
    ``BlipTextLMHeadModel``), as BLIP pre-training does: every module with a weight (embeddings,
    LayerNorms, cross-attention, feed-forward) is shared, except those under a ``skip`` module
    (the self-attention, ``layer.N.attention``; ``crossattention`` is shared). Both networks must
    have the same structure. Returns the names of the tied modules."""
    tied = []
    for name, module in decoder_bert.named_modules():
        if skip in name.split(".") or not isinstance(getattr(module, "weight", None), nn.Parameter):
            continue
        target = encoder.get_submodule(name)
        target.weight = module.weight
        if isinstance(getattr(module, "bias", None), nn.Parameter):
            target.bias = module.bias
        tied.append(name)
    return tied
