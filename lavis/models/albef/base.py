"""What every ALBEF model shares: the image and text encoders, the tokenizer, momentum copies,
and loading LAVIS checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from lavis.common.errors import ConfigError
from lavis.models.albef.encoders import FusionBert, VisionConfig, bert_config, build_vit
from lavis.models.base_model import BaseModel, ConvertedStateDict


def load_bert_tokenizer(name_or_path: str) -> Any:
    """A ``transformers.BertTokenizer`` (uncased WordPiece, ``[PAD]`` = 0) from a folder with
    ``vocab.txt`` (relative to the ``lavis`` package, e.g. ``assets/tokenizers/tiny``, or absolute)
    or a Hub repo id such as ``bert-base-uncased``."""
    from transformers import BertTokenizer

    from lavis.models.blip.tokenizer import resolve_tokenizer_source

    source = resolve_tokenizer_source(name_or_path)
    try:
        tok = BertTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise ConfigError(
            [f"model.tokenizer: cannot load a BERT tokenizer from {name_or_path!r} ({e}). Give a folder with "
             "vocab.txt (absolute, or relative to the lavis package such as 'assets/tokenizers/tiny'), or a Hub "
             "repo id that is in the local Hugging Face cache when offline."]
        ) from e
    if tok.pad_token_id != 0 or tok.mask_token_id is None:
        raise ConfigError([f"model.tokenizer: {name_or_path!r} needs [PAD] at id 0 and a [MASK] token"])
    return tok




class AlbefBase(BaseModel):
    """An ALBEF model: ``visual_encoder`` (timm ViT) and ``text_encoder`` (:class:`FusionBert`).

    Every ALBEF arch takes these arguments first (no defaults: the model-type YAMLs set them):

    Args:
        vision_config: keys of :class:`~lavis.models.albef.encoders.VisionConfig` (``image_size``,
            ``patch_size``, ``width``, ``layers``, ``heads``, ``drop_path_rate``).
        text_config: keys of ``transformers.BertConfig`` (``hidden_size``, ``num_hidden_layers``,
            ...); ``vocab_size`` defaults to the tokenizer's, ``pad_token_id`` is the tokenizer's.
        fusion_layer: the first text layer with cross-attention to the image (ALBEF: 6 of 12).
        tokenizer: a folder with ``vocab.txt`` or a Hub repo id (``bert-base-uncased``).
        max_txt_len: texts are truncated to this many tokens.
    """

    NESTED_CONFIGS: ClassVar[dict[str, str]] = {"text_config": "transformers:BertConfig"}

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        fusion_layer: int,
        tokenizer: str,
        max_txt_len: int,
    ):
        super().__init__()
        self.tokenizer = load_bert_tokenizer(tokenizer)
        self.max_txt_len = int(max_txt_len)
        self.text_config = bert_config(text_config, len(self.tokenizer), self.tokenizer.pad_token_id)
        if not 0 < fusion_layer < self.text_config.num_hidden_layers:
            raise ConfigError(
                [f"model.fusion_layer: {fusion_layer} must lie between 1 and text_config.num_hidden_layers - 1 "
                 f"({self.text_config.num_hidden_layers - 1}): ALBEF needs text-only and fusion layers"]
            )
        self.vision_config = VisionConfig.from_block(vision_config)
        self.vision_width = self.vision_config.width
        self.visual_encoder = build_vit(self.vision_config)
        self.text_encoder = FusionBert(self.text_config, fusion_layer, self.vision_width)

    @classmethod
    def validate_config(cls, cfg: Mapping[str, Any]) -> list[str]:
        """The base checks plus unknown keys of the ``vision_config`` block (before anything is built)."""
        problems = super().validate_config(cfg)
        block = cfg.get("vision_config")
        return problems + (VisionConfig.problems(block) if isinstance(block, Mapping) else [])

    # -- building blocks ------------------------------------------------------------------------
    def encode_image(self, image: torch.Tensor, momentum: bool = False) -> torch.Tensor:
        """ViT states [B, 1 + patches, vision_width] of normalized images [B, 3, H, W]."""
        encoder: Any = self.get_submodule("visual_encoder_m" if momentum else "visual_encoder")
        return encoder.forward_features(image.to(self.device))

    def tokenize(self, texts: list[str], pad_to_max: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` [B, L] of ``texts`` ([CLS] ... [SEP]), truncated to
        ``max_txt_len`` and padded to the longest text, or to ``max_txt_len`` with ``pad_to_max`` (so
        that batches concatenate). Padding changes no output: padded positions are never attended."""
        if isinstance(texts, str):
            raise TypeError("samples['text_input'] must be a list of strings, not one string")
        enc = self.tokenizer(
            list(texts), padding="max_length" if pad_to_max else "longest", truncation=True,
            max_length=self.max_txt_len, return_tensors="pt",
        )
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)

    @staticmethod
    def image_mask(image_states: torch.Tensor) -> torch.Tensor:
        return torch.ones(image_states.shape[:-1], dtype=torch.long, device=image_states.device)

    # -- weights --------------------------------------------------------------------------------
    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept our layout and LAVIS' (:mod:`lavis.models.albef.convert`)."""
        from lavis.models.albef import convert

        if not convert.is_lavis_layout(state_dict):
            return state_dict
        ours = set(self.state_dict())
        mlm = any(k.startswith(convert._MLM_PREFIXES) for k in state_dict)
        vit: Any = self.visual_encoder
        positions = int(vit.pos_embed.shape[1])
        converted = convert.lavis_to_ours(state_dict, ours, positions)
        return ConvertedStateDict(
            converted, layout="LAVIS", original_name=lambda k: convert.ours_key_to_lavis(k, mlm)
        )
