"""ALBEF's image-text alignment: contrastive projections (ITC) and the matching head (ITM).

Shared by ``albef_feature_extractor`` and ``albef_retrieval`` (and the pre-training model): the
projected, normalised [CLS] embeddings of image and text, the ITM head over the fusion layers'
[CLS] state, ITM with hard negatives drawn from the contrastive similarities, feature extraction
and the retrieval contract (:meth:`encode_for_retrieval`, :meth:`rerank`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lavis.models.albef.base import AlbefBase
from lavis.models.alignment import hard_negatives
from lavis.models.base_model import RetrievalFeatures

FEATURE_MODES = ("image", "text", "multimodal")


@dataclass
class AlbefFeatures:
    """What :meth:`AlbefContrastive.extract_features` returns (``None`` where a mode does not give it).

    ``image_embeds`` [B, 1 + patches, vision_width] (ViT states), ``image_embeds_proj`` [B, 1 +
    patches, embed_dim] (projected, L2-normalised; row 0 is the contrastive image embedding),
    ``text_embeds`` [B, L, hidden] (text-only layers), ``text_embeds_proj`` [B, L, embed_dim],
    ``multimodal_embeds`` [B, L, hidden] (fusion layers).
    """

    image_embeds: torch.Tensor | None = None
    image_embeds_proj: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    text_embeds_proj: torch.Tensor | None = None
    multimodal_embeds: torch.Tensor | None = None



class AlbefContrastive(AlbefBase):
    """An ALBEF model with ``vision_proj``, ``text_proj`` (to ``embed_dim``), ``itm_head`` and ``temp``.

    Args:
        vision_config, text_config, fusion_layer, tokenizer, max_txt_len: the encoders
            (:class:`~lavis.models.albef.base.AlbefBase`).
        embed_dim: width of the contrastive embeddings.
        temp: initial contrastive temperature (learned, clamped to [0.001, 0.5] in training).
    """

    TASK_METHODS = ("extract_features", "encode_for_retrieval", "rerank")

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        fusion_layer: int,
        tokenizer: str,
        max_txt_len: int,
        embed_dim: int = 256,
        temp: float = 0.07,
    ):
        super().__init__(vision_config, text_config, fusion_layer, tokenizer, max_txt_len)
        hidden = self.text_config.hidden_size
        self.vision_proj = nn.Linear(self.vision_width, embed_dim)
        self.text_proj = nn.Linear(hidden, embed_dim)
        self.itm_head = nn.Linear(hidden, 2)
        self.temp = nn.Parameter(torch.tensor(float(temp)))

    # -- embeddings and scores ------------------------------------------------------------------
    def image_feat(self, image_states: torch.Tensor, momentum: bool = False) -> torch.Tensor:
        """Normalised contrastive image embeddings [B, embed_dim] from ViT states."""
        proj = self.get_submodule("vision_proj_m" if momentum else "vision_proj")
        return F.normalize(proj(image_states[:, 0, :]), dim=-1)

    def text_feat(self, text_states: torch.Tensor, momentum: bool = False) -> torch.Tensor:
        """Normalised contrastive text embeddings [B, embed_dim] from text-only states."""
        proj = self.get_submodule("text_proj_m" if momentum else "text_proj")
        return F.normalize(proj(text_states[:, 0, :]), dim=-1)

    def itm_logits(self, image_states: torch.Tensor, text_states: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """ITM logits [B, 2] (no match, match) of pairs: the fusion layers over text-only states."""
        fused = self.text_encoder.forward_fusion(text_states, text_mask, image_states)
        return self.itm_head(fused[:, 0, :])

    def itm_loss(
        self,
        image_states: torch.Tensor,
        text_states: torch.Tensor,
        text_mask: torch.Tensor,
        sim_i2t: torch.Tensor,
        sim_t2i: torch.Tensor,
        positive: torch.Tensor,
    ) -> torch.Tensor:
        """ITM cross entropy over B positive pairs, B (hard negative image, text) and B (image, hard
        negative text) pairs; the negatives are drawn from the in-batch similarities [B, B]."""
        neg_image = hard_negatives(sim_t2i, positive)
        neg_text = hard_negatives(sim_i2t, positive)
        images = torch.cat([image_states, image_states[neg_image], image_states], dim=0)
        texts = torch.cat([text_states, text_states, text_states[neg_text]], dim=0)
        masks = torch.cat([text_mask, text_mask, text_mask[neg_text]], dim=0)
        logits = self.itm_logits(images, texts, masks)
        b = image_states.shape[0]
        labels = torch.cat([torch.ones(b, dtype=torch.long), torch.zeros(2 * b, dtype=torch.long)]).to(logits.device)
        return F.cross_entropy(logits, labels)

    # -- task methods -----------------------------------------------------------------------------
    @torch.no_grad()
    def extract_features(self, samples: dict[str, Any], mode: str = "multimodal") -> AlbefFeatures:
        """Features of ``samples["image"]`` [B, 3, H, W] and/or ``samples["text_input"]`` (B strings).

        ``mode``: ``"image"`` (image states and their projections), ``"text"`` (text-only states
        and projections) or ``"multimodal"`` (image states and the fusion layers' states; also the
        unimodal features computed on the way).
        """
        if mode not in FEATURE_MODES:
            raise ValueError(f"mode={mode!r} is not one of {', '.join(map(repr, FEATURE_MODES))}")
        feats = AlbefFeatures()
        if mode in ("image", "multimodal"):
            if samples.get("image") is None:
                raise ValueError(f"mode={mode!r} needs samples['image']")
            feats.image_embeds = self.encode_image(samples["image"])
            feats.image_embeds_proj = F.normalize(self.vision_proj(feats.image_embeds), dim=-1)
        if mode in ("text", "multimodal"):
            if samples.get("text_input") is None:
                raise ValueError(f"mode={mode!r} needs samples['text_input']")
            ids, mask = self.tokenize(samples["text_input"])
            feats.text_embeds = self.text_encoder.forward_text(ids, mask)
            feats.text_embeds_proj = F.normalize(self.text_proj(feats.text_embeds), dim=-1)
            if mode == "multimodal":
                assert feats.image_embeds is not None
                feats.multimodal_embeds = self.text_encoder.forward_fusion(feats.text_embeds, mask, feats.image_embeds)
        return feats

    @torch.no_grad()
    def encode_for_retrieval(self, samples: dict[str, Any], modality: str) -> RetrievalFeatures:
        """One side of retrieval. ``"image"``: embeds [B, embed_dim] and ``states["image_embeds"]``
        (ViT states); ``"text"``: embeds and ``states`` ``input_ids``, ``attention_mask`` [B, max_txt_len]."""
        if modality == "image":
            states = self.encode_image(samples["image"])
            return RetrievalFeatures(self.image_feat(states), {"image_embeds": states})
        if modality == "text":
            ids, mask = self.tokenize(samples["text_input"], pad_to_max=True)
            text_states = self.text_encoder.forward_text(ids, mask)
            return RetrievalFeatures(self.text_feat(text_states), {"input_ids": ids, "attention_mask": mask})
        raise ValueError(f"modality={modality!r} is not 'image' or 'text'")

    @torch.no_grad()
    def rerank(self, image_states: dict[str, torch.Tensor], text_states: dict[str, torch.Tensor]) -> torch.Tensor:
        """ITM score [N] of N (image, text) pairs: the "match" logit of the ITM head, as LAVIS'
        ``compute_sim_matrix`` adds it to the ITC similarity of the top-k candidates."""
        ids, mask = text_states["input_ids"].to(self.device), text_states["attention_mask"].to(self.device)
        text = self.text_encoder.forward_text(ids, mask)
        return self.itm_logits(image_states["image_embeds"].to(self.device), text, mask)[:, 1]
