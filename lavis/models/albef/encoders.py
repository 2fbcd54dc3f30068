"""ALBEF's networks: a timm ViT for images and a BERT split into text-only and fusion layers.

The text encoder is a BERT whose first ``fusion_layer`` layers read text alone and whose remaining
layers also cross-attend to image states ("fusion" layers). ALBEF runs the two halves apart: the
text half gives unimodal text features for contrastive learning, the fusion half takes those
features and the image states and gives the multimodal states that the ITM, VQA and
classification heads read. The layers are transformers' ``BertLayer``; what this module adds is
the split, the embeddings without token types (ALBEF's BERT has none) and masks.

Parameter names follow transformers' ``BertModel`` (``embeddings.*``, ``encoder.layer.{i}.*``),
which are also LAVIS' names, so that converting checkpoints is a renaming of prefixes only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import torch
from torch import nn


@dataclass
class VisionConfig:
    """The ``vision_config`` block of ALBEF models: a ViT of ``layers`` pre-norm blocks of width
    ``width`` and ``heads`` heads over ``patch_size`` patches of ``image_size`` px images
    (ALBEF: ViT-B/16, width 768, 12 layers, 12 heads)."""

    image_size: int = 384
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    drop_path_rate: float = 0.0

    @classmethod
    def problems(cls, block: Mapping[str, Any]) -> list[str]:
        """``model.vision_config.key: ...`` for each unknown key of ``block``."""
        from lavis.common.schema import unknown_key

        valid = [f.name for f in fields(cls)]
        return [unknown_key("model.vision_config", str(k), valid) for k in block if k not in valid]

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> VisionConfig:
        from lavis.common.errors import ConfigError

        problems = cls.problems(block)
        if problems:
            raise ConfigError(problems)
        return cls(**dict(block))


def build_vit(config: VisionConfig) -> nn.Module:
    """timm's ``VisionTransformer`` as ALBEF uses it: [CLS] + patches, pre-norm blocks, final LayerNorm
    (eps 1e-6), no head. ``forward_features(image [B, 3, S, S])`` -> ``[B, 1 + (S/patch)^2, width]``.

    Its parameter names (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.{i}.attn.qkv``,
    ...) are those of LAVIS' ViT, so LAVIS' ``visual_encoder.*`` tensors load as they are.
    """
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=config.width,
        depth=config.layers,
        num_heads=config.heads,
        mlp_ratio=4.0,
        qkv_bias=True,
        num_classes=0,
        global_pool="",
        drop_path_rate=config.drop_path_rate,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
    )


def bert_config(text_config: Mapping[str, Any], vocab_size: int, pad_token_id: int) -> Any:
    """A ``transformers.BertConfig`` from a ``text_config`` block; ``vocab_size`` defaults to the
    tokenizer's (``vocab_size``), ``pad_token_id`` is the tokenizer's."""
    from transformers import BertConfig

    from lavis.common.errors import ConfigError

    block = dict(text_config)
    block.setdefault("vocab_size", vocab_size)
    if block["vocab_size"] < vocab_size:
        raise ConfigError(
            [f"model.text_config.vocab_size: {block['vocab_size']} is smaller than the tokenizer's {vocab_size} "
             f"tokens; set it to {vocab_size} or remove it"]
        )
    cfg = BertConfig(**{**block, "pad_token_id": pad_token_id})
    cfg._attn_implementation = "sdpa"
    return cfg


def padding_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention mask [B, 1, 1, L] from a 0/1 mask [B, L]: 0 to attend, a large negative not to."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def causal_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask [B, 1, L, L]: position t attends to positions <= t that ``mask`` [B, L] keeps."""
    length = mask.shape[1]
    allowed = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    keep = allowed[None, None] & mask[:, None, None, :].bool()
    return (~keep).to(dtype) * torch.finfo(dtype).min


class TextEmbeddings(nn.Module):
    """Word + absolute position embeddings, LayerNorm, dropout (BERT's, without token types)."""

    def __init__(self, config: Any):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids`` [B, L] -> [B, L, hidden]."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        return self.dropout(self.LayerNorm(x))


class _Layers(nn.Module):
    """Holds ``layer`` so that parameter names read ``encoder.layer.{i}`` as in BERT."""

    def __init__(self, layers: Sequence[nn.Module]):
        super().__init__()
        self.layer = nn.ModuleList(layers)


class FusionBert(nn.Module):
    """A BERT whose layers from ``fusion_layer`` on cross-attend to image states.

    Args:
        config: a ``transformers.BertConfig`` (``num_hidden_layers`` in all).
        fusion_layer: the first layer with cross-attention; layers before it are text-only. 0 makes
            every layer a fusion layer (ALBEF's answer decoder).
        encoder_width: the width of the image states the fusion layers attend to.
        causal: self-attention sees only earlier positions (a decoder).
    """

    def __init__(self, config: Any, fusion_layer: int, encoder_width: int, causal: bool = False):
        super().__init__()
        import copy

        from transformers.models.bert.modeling_bert import BertLayer

        if not 0 <= fusion_layer <= config.num_hidden_layers:
            raise ValueError(f"fusion_layer={fusion_layer} must lie in 0..{config.num_hidden_layers}")
        self.fusion_layer = fusion_layer
        self.causal = causal
        self.config = config
        text_cfg = copy.deepcopy(config)
        text_cfg.is_decoder, text_cfg.add_cross_attention = causal, False
        fusion_cfg = copy.deepcopy(config)
        fusion_cfg.is_decoder, fusion_cfg.add_cross_attention = True, True
        layers = []
        for i in range(config.num_hidden_layers):
            layer = BertLayer(fusion_cfg if i >= fusion_layer else text_cfg, layer_idx=i)
            if i >= fusion_layer and encoder_width != config.hidden_size:
                cross = layer.crossattention.self
                cross.key = nn.Linear(encoder_width, cross.all_head_size)
                cross.value = nn.Linear(encoder_width, cross.all_head_size)
            layers.append(layer)
        self.embeddings = TextEmbeddings(config)
        self.encoder = _Layers(layers)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layer)

    def self_mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return causal_mask(attention_mask, dtype) if self.causal else padding_mask(attention_mask, dtype)

    def run_layers(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        start: int,
        end: int,
        image_states: torch.Tensor | Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Layers ``start .. end-1`` over ``hidden`` [B, L, hidden] with text mask [B, L] (0/1).

        ``image_states`` [B, N, width] feed the fusion layers' cross-attention (all image
        positions are attended); a list of several gives fusion layer ``i`` the image
        ``(i - fusion_layer) % len(list)`` (ALBEF's NLVR2 model alternates its two images).
        """
        mask = self.self_mask(attention_mask, hidden.dtype)
        images = [image_states] if isinstance(image_states, torch.Tensor) else list(image_states or [])
        for i in range(start, end):
            kwargs: dict[str, torch.Tensor] = {}
            if i >= self.fusion_layer:
                if not images:
                    raise ValueError(f"layer {i} is a fusion layer: it needs image states")
                image = images[(i - self.fusion_layer) % len(images)]
                kwargs["encoder_hidden_states"] = image
                kwargs["encoder_attention_mask"] = torch.zeros(
                    image.shape[0], 1, 1, image.shape[1], dtype=hidden.dtype, device=hidden.device
                )
            hidden = self.encoder.layer[i](hidden, mask, **kwargs)
        return hidden

    def forward_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Text-only states [B, L, hidden] from the layers before ``fusion_layer``."""
        return self.run_layers(self.embeddings(input_ids), attention_mask, 0, self.fusion_layer)

    def forward_fusion(
        self,
        text_states: torch.Tensor,
        attention_mask: torch.Tensor,
        image_states: torch.Tensor | Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Multimodal states [B, L, hidden]: the fusion layers over text states from :meth:`forward_text`."""
        return self.run_layers(text_states, attention_mask, self.fusion_layer, self.num_layers, image_states)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_states: torch.Tensor | Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """All layers: token ids [B, L] and image states -> multimodal states [B, L, hidden]."""
        return self.run_layers(self.embeddings(input_ids), attention_mask, 0, self.num_layers, image_states)


def tied_lm_head(bert: FusionBert) -> nn.Module:
    """BERT's LM head (``predictions.transform``, ``predictions.decoder``, ``predictions.bias``) whose
    output projection is ``bert``'s word embeddings and whose decoder bias is ``predictions.bias``,
    as in LAVIS' BERT heads. ``head(hidden [B, L, D])`` -> logits [B, L, vocab]."""
    from transformers.models.bert.modeling_bert import BertOnlyMLMHead

    head = BertOnlyMLMHead(bert.config)
    head.apply(bert._init_weights)
    predictions = head.predictions
    nn.init.zeros_(predictions.bias)
    predictions.decoder.bias = predictions.bias
    predictions.decoder.weight = bert.embeddings.word_embeddings.weight
    return head


class AnswerDecoder(nn.Module):
    """ALBEF's answer decoder: a causal :class:`FusionBert` (cross-attention in every layer) over the
    question's multimodal states, with BERT's LM head (tied to the word embeddings).

    Parameter names are LAVIS' ``text_decoder.bert.*`` and ``text_decoder.cls.*``.
    """

    def __init__(self, config: Any, encoder_width: int):
        super().__init__()
        self.bert = FusionBert(config, fusion_layer=0, encoder_width=encoder_width, causal=True)
        self.cls = tied_lm_head(self.bert)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        states: torch.Tensor,
        states_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Next-token logits [B, L, V] for ``input_ids`` [B, L] given ``states`` [B, N, D] (mask [B, N])."""
        hidden = self.bert.embeddings(input_ids)
        mask = self.bert.self_mask(attention_mask, hidden.dtype)
        cross = padding_mask(states_mask, hidden.dtype)
        for layer in self.bert.encoder.layer:
            hidden = layer(hidden, mask, encoder_hidden_states=states, encoder_attention_mask=cross)
        return self.cls(hidden)
