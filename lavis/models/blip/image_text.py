"""BLIP image-text encoders: ``blip_feature_extractor`` and ``blip_image_text_matching``.

The networks are transformers' BLIP parts: ``BlipVisionModel`` (the ViT) and ``BlipTextModel`` (a
BERT encoder whose layers cross-attend to the image when given image states), plus the linear
heads of ``BlipForImageTextRetrieval``: ``vision_proj`` and ``text_proj`` (ITC embeddings) and
``itm_head`` (match / no match). Module names are transformers', so Hub checkpoints in its layout
load as they are; LAVIS checkpoints go through :mod:`lavis.models.blip.convert`.

What LAVIS adds and this module keeps: the text encoder reads ``[CLS] text`` on its own
(unimodal) and ``[ENC] text`` when it attends to the image (multimodal); ITC embeddings are the
L2-normalised projections of the ``[CLS]`` states; the ITM score is ``itm_head`` on the
multimodal ``[CLS]`` state. ``blip_retrieval`` (momentum encoders and queues) builds on
:class:`BlipImageTextMatching` in :mod:`lavis.models.blip.blip_retrieval`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.models.alignment import hard_negatives, itc_targets, soft_cross_entropy
from lavis.models.base_model import BaseModel, ConvertedStateDict, ModelOutput, RetrievalFeatures
from lavis.models.blip.parts import build_blip_encoders

FEATURE_MODES = ("image", "text", "multimodal")
# Tied tensors of an answer decoder (alias, source): checkpoints may hold only the source.
_TIED_KEYS = (
    ("text_decoder.cls.predictions.decoder.weight", "text_decoder.bert.embeddings.word_embeddings.weight"),
    ("text_decoder.cls.predictions.decoder.bias", "text_decoder.cls.predictions.bias"),
)


@dataclass
class BlipFeatures:
    """What ``extract_features`` returns (the fields a mode does not compute are ``None``).

    ``image_embeds`` [B, 1 + patches, vision width]: ViT states (modes ``image``, ``multimodal``);
    ``image_embeds_proj`` [B, 1 + patches, embed_dim]: their ITC projections, L2-normalised (``image``);
    ``text_embeds`` [B, L, text width]: unimodal text states (``text``);
    ``text_embeds_proj`` [B, L, embed_dim]: their ITC projections, L2-normalised (``text``);
    ``multimodal_embeds`` [B, L, text width]: text states attending to the image (``multimodal``).
    Position 0 is ``[CLS]`` (``[ENC]`` for the multimodal states); ``[:, 0]`` of the projections are
    the ITC embeddings.
    """

    image_embeds: torch.Tensor | None = None
    image_embeds_proj: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    text_embeds_proj: torch.Tensor | None = None
    multimodal_embeds: torch.Tensor | None = None



class BlipEncoders(BaseModel):
    """The BLIP tokenizer, ViT (``vision_model``) and text encoder with cross-attention
    (``text_encoder``) that the image-text, VQA and NLVR archs share; not registered itself.

    Args:
        vision_config: keys of ``transformers.BlipVisionConfig``.
        text_config: keys of ``transformers.BlipTextConfig`` (``encoder_hidden_size`` is the ViT
            width, set here; ``vocab_size`` defaults to the tokenizer's length).
        tokenizer: a folder with ``vocab.txt`` (relative to the ``lavis`` package or absolute) or a
            Hub repo id (``bert-base-uncased``); ``[DEC]`` and ``[ENC]`` are added.
        max_txt_len: texts are cut to this many tokens (``[CLS]`` and ``[SEP]`` included); retrieval
            pads every text to it (LAVIS: 35).
    """

    NESTED_CONFIGS: ClassVar[dict[str, str]] = {
        "vision_config": "transformers:BlipVisionConfig",
        "text_config": "transformers:BlipTextConfig",
    }

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        tokenizer: str = "bert-base-uncased",
        max_txt_len: int = 35,
    ):
        super().__init__()
        self.tokenizer, self.vision_model, self.text_encoder, self.text_cfg = build_blip_encoders(
            vision_config, text_config, tokenizer
        )
        self.max_txt_len = int(max_txt_len)
        positions = int(self.text_encoder.config.max_position_embeddings)
        if not 2 < self.max_txt_len <= positions:
            raise ConfigError(
                [f"model.max_txt_len: {max_txt_len} must be in 3..{positions} (text_config.max_position_embeddings)"]
            )

    # -- encoders --------------------------------------------------------------------------------
    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """ViT states (after the final LayerNorm): ``image`` [B, 3, H, W] -> [B, 1 + patches, width]."""
        return self.vision_model(pixel_values=image.to(self.device)).last_hidden_state

    def tokenize(self, texts: list[str], padding: str = "longest", max_length: int | None = None) -> Any:
        """``input_ids`` and ``attention_mask`` [B, L] starting with ``[CLS]``, cut to ``max_length``
        (default ``max_txt_len``); ``padding="max_length"`` pads every text to it."""
        if isinstance(texts, str):
            raise TypeError("samples['text_input'] must be a list of texts, not one string")
        return self.tokenizer(
            list(texts), padding=padding, truncation=True, max_length=max_length or self.max_txt_len,
            return_tensors="pt",
        ).to(self.device)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unimodal text states [B, L, width] of ``[CLS] text`` ids."""
        return self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def encode_multimodal(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor
    ) -> torch.Tensor:
        """Text states [B, L, width] attending to ``image_embeds`` [B, N, vision width]; the first id
        is replaced by ``[ENC]``."""
        ids = input_ids.clone()
        ids[:, 0] = self.tokenizer.enc_token_id
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        return self.text_encoder(
            input_ids=ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
        ).last_hidden_state

    # -- weights ---------------------------------------------------------------------------------
    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept this model's layout (also transformers' ``BlipForImageTextRetrieval``, the Hub
        repos') and LAVIS' (``visual_encoder.*``, renamed by :mod:`lavis.models.blip.convert`;
        LAVIS modules this arch lacks are left out and logged). Buffers rebuilt here
        (``position_ids``) are dropped."""
        from lavis.models.blip import convert

        converted = convert.is_lavis_layout(state_dict)
        if converted:
            own = {name.split(".")[0] for name in self.state_dict()}
            positions = self.vision_model.embeddings.position_embedding.shape[1]
            state_dict = convert.lavis_to_image_text(state_dict, own, num_image_positions=positions)
        state_dict = dict(state_dict)
        kept = self.state_dict(keep_vars=True).keys()
        for name, _ in self.named_buffers():
            if name not in kept:
                state_dict.pop(name, None)
        for alias, source in _TIED_KEYS:
            if alias in kept and alias not in state_dict and source in state_dict:
                state_dict[alias] = state_dict[source]
        if converted:
            return ConvertedStateDict(state_dict, layout="LAVIS", original_name=convert.image_text_key_to_lavis)
        return state_dict


class BlipImageTextBase(BlipEncoders):
    """:class:`BlipEncoders` plus the ITC projections ``vision_proj`` and ``text_proj`` (to
    ``embed_dim``), with features and retrieval embeddings; not registered itself."""

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        tokenizer: str = "bert-base-uncased",
        embed_dim: int = 256,
        max_txt_len: int = 35,
    ):
        super().__init__(vision_config, text_config, tokenizer, max_txt_len)
        self.vision_proj = nn.Linear(int(self.vision_model.config.hidden_size), embed_dim)
        self.text_proj = nn.Linear(int(self.text_encoder.config.hidden_size), embed_dim)

    def image_feat(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """ITC image embeddings [B, embed_dim], L2-normalised, from ViT states."""
        return F.normalize(self.vision_proj(image_embeds[:, 0, :]), dim=-1)

    def text_feat(self, text_embeds: torch.Tensor) -> torch.Tensor:
        """ITC text embeddings [B, embed_dim], L2-normalised, from unimodal text states."""
        return F.normalize(self.text_proj(text_embeds[:, 0, :]), dim=-1)

    # -- task methods ----------------------------------------------------------------------------
    @torch.no_grad()
    def extract_features(self, samples: dict[str, Any], mode: str = "multimodal") -> BlipFeatures:
        """Features of ``samples["image"]`` [B, 3, H, W] and/or ``samples["text_input"]`` (B texts), as
        LAVIS' ``BlipFeatureExtractor``: see :class:`BlipFeatures` for what each ``mode`` fills.
        Texts are padded to the longest and cut at ``text_config.max_position_embeddings``."""
        if mode not in FEATURE_MODES:
            raise ValueError(f"mode={mode!r} is not one of {', '.join(map(repr, FEATURE_MODES))}")
        needs = {"image": ("image",), "text": ("text_input",), "multimodal": ("image", "text_input")}[mode]
        absent = [k for k in needs if samples.get(k) is None]
        if absent:
            raise ValueError(f"extract_features(mode={mode!r}) needs samples[{absent[0]!r}]")
        if mode == "image":
            image_embeds = self.encode_image(samples["image"])
            return BlipFeatures(image_embeds=image_embeds, image_embeds_proj=F.normalize(self.vision_proj(image_embeds), dim=-1))
        text = self.tokenize(samples["text_input"], max_length=int(self.text_encoder.config.max_position_embeddings))
        if mode == "text":
            text_embeds = self.encode_text(text.input_ids, text.attention_mask)
            return BlipFeatures(text_embeds=text_embeds, text_embeds_proj=F.normalize(self.text_proj(text_embeds), dim=-1))
        image_embeds = self.encode_image(samples["image"])
        return BlipFeatures(
            image_embeds=image_embeds,
            multimodal_embeds=self.encode_multimodal(text.input_ids, text.attention_mask, image_embeds),
        )

    @torch.no_grad()
    def encode_for_retrieval(self, samples: dict[str, Any], modality: str) -> RetrievalFeatures:
        """ITC embeddings [B, embed_dim] and the states :meth:`rerank` reads.

        ``"image"``: states ``{"image_embeds": [B, 1 + patches, width]}``. ``"text"``: the texts padded
        to ``max_txt_len`` (as LAVIS' retrieval evaluation), states ``{"input_ids", "attention_mask"}``
        [B, max_txt_len] with ``[CLS]`` first (the image-grounded encoder puts ``[ENC]`` there).
        """
        if modality == "image":
            image_embeds = self.encode_image(samples["image"])
            return RetrievalFeatures(self.image_feat(image_embeds), {"image_embeds": image_embeds})
        if modality == "text":
            text = self.tokenize(samples["text_input"], padding="max_length")
            embeds = self.text_feat(self.encode_text(text.input_ids, text.attention_mask))
            return RetrievalFeatures(embeds, {"input_ids": text.input_ids, "attention_mask": text.attention_mask})
        raise ValueError(f"modality={modality!r} is not 'image' or 'text'")

@registry.register_model("blip_image_text_matching")
class BlipImageTextMatching(BlipImageTextBase):
    """BLIP image-text matching (LAVIS ``blip_image_text_matching``): ITM scores and ITC similarity.

    Args (besides :class:`BlipImageTextBase`'s):
        itc_temperature: the fixed temperature of ``forward``'s ITC loss and hard-negative sampling
            (LAVIS' ITM model has no training forward and no learned temperature; ours can be
            fine-tuned: ITC plus ITM with hard negatives, as in ``blip_retrieval`` without momentum).
    """

    TASK_METHODS = ("extract_features", "encode_for_retrieval", "rerank")

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        tokenizer: str = "bert-base-uncased",
        embed_dim: int = 256,
        max_txt_len: int = 35,
        itc_temperature: float = 0.07,
    ):
        super().__init__(vision_config, text_config, tokenizer, embed_dim, max_txt_len)
        self.itm_head = nn.Linear(self.text_proj.in_features, 2)
        self.itc_temperature = float(itc_temperature)

    def temperature(self) -> torch.Tensor | float:
        """The ITC temperature (a learned parameter in ``blip_retrieval``)."""
        return self.itc_temperature

    # -- scores ----------------------------------------------------------------------------------
    def itm_logits(self, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """ITM logits [B, 2] (column 1: match) of image states [B, N, W] and ``[CLS]`` text ids [B, L]."""
        return self.itm_head(self.encode_multimodal(input_ids, attention_mask, image_embeds)[:, 0, :])

    @torch.no_grad()
    def itm_scores(self, samples: dict[str, Any]) -> torch.Tensor:
        """ITM logits [B, 2] of pair i = (``samples["image"][i]``, ``samples["text_input"][i]``); as LAVIS'
        ``model(samples, match_head="itm")``. ``softmax(dim=1)[:, 1]`` is the match probability."""
        text = self.tokenize(samples["text_input"])
        return self.itm_logits(self.encode_image(samples["image"]), text.input_ids, text.attention_mask)

    @torch.no_grad()
    def itc_similarity(self, samples: dict[str, Any]) -> torch.Tensor:
        """Cosine similarity [B_images, B_texts] of the ITC embeddings; as LAVIS' ``match_head="itc"``."""
        text = self.tokenize(samples["text_input"])
        image_feat = self.image_feat(self.encode_image(samples["image"]))
        return image_feat @ self.text_feat(self.encode_text(text.input_ids, text.attention_mask)).t()

    @torch.no_grad()
    def rerank(self, image_states: dict[str, torch.Tensor], text_states: dict[str, torch.Tensor]) -> torch.Tensor:
        """ITM logit of "match" [N] for pair i = (row i of the image states, row i of the text states),
        both from :meth:`encode_for_retrieval`. LAVIS' retrieval evaluation ranks its top-k candidates
        by this logit plus the ITC similarity."""
        logits = self.itm_logits(image_states["image_embeds"], text_states["input_ids"], text_states["attention_mask"])
        return logits[:, 1]

    # -- training --------------------------------------------------------------------------------
    def itm_loss(
        self,
        image_embeds: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sim_i2t: torch.Tensor,
        sim_t2i: torch.Tensor,
        image_id: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ITM cross entropy over B positive pairs and 2B hard negatives (LAVIS' scheme).

        Each text gets a negative image and each image a negative text, drawn with probability
        ``softmax(sim)`` over the batch (``sim_*`` [B, B], already divided by the temperature) with
        pairs of the same image excluded. A row with no other image in the batch draws uniformly
        from the other rows (LAVIS would fail there). Returns the loss and the logits [3B, 2].
        """
        batch = image_embeds.shape[0]
        if batch < 2:
            raise ValueError("ITM with hard negatives needs a batch of at least 2 pairs")
        ids = torch.arange(batch) if image_id is None else image_id.view(-1).cpu()
        same = (ids.view(-1, 1) == ids.view(1, -1)).to(sim_i2t.device)
        neg_image = hard_negatives(sim_t2i, same)
        neg_text = hard_negatives(sim_i2t, same)
        ids_all = torch.cat([input_ids, input_ids, input_ids[neg_text]], dim=0)
        atts_all = torch.cat([attention_mask, attention_mask, attention_mask[neg_text]], dim=0)
        images_all = torch.cat([image_embeds, image_embeds[neg_image], image_embeds], dim=0)
        logits = self.itm_logits(images_all, ids_all, atts_all)
        labels = torch.cat([torch.ones(batch), torch.zeros(2 * batch)]).long().to(logits.device)
        return F.cross_entropy(logits, labels), logits

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """ITC + ITM loss of ``samples["image"]`` [B, 3, H, W] and ``samples["text_input"]`` (B texts,
        B >= 2); optional ``samples["image_id"]`` [B] marks pairs of the same image as positives."""
        image_embeds = self.encode_image(samples["image"])
        text = self.tokenize(samples["text_input"])
        image_feat = self.image_feat(image_embeds)
        text_feat = self.text_feat(self.encode_text(text.input_ids, text.attention_mask))
        temp = self.temperature()
        sim_i2t = image_feat @ text_feat.t() / temp
        image_id = samples.get("image_id")
        targets = itc_targets(image_id, len(image_feat)).to(sim_i2t.device)
        loss_itc = (soft_cross_entropy(sim_i2t, targets) + soft_cross_entropy(sim_i2t.t(), targets)) / 2
        loss_itm, _ = self.itm_loss(
            image_embeds, text.input_ids, text.attention_mask, sim_i2t.detach(), sim_i2t.t().detach(), image_id
        )
        return ModelOutput(loss=loss_itc + loss_itm, extras={"loss_itc": loss_itc.detach(), "loss_itm": loss_itm.detach()})


@registry.register_model("blip_feature_extractor")
class BlipFeatureExtractor(BlipImageTextMatching):
    """BLIP image, text and multimodal features (LAVIS ``blip_feature_extractor``).

    Its published weights (``base``) are BLIP's pre-training checkpoint, which has the ITM head
    and the learned ITC temperature ``temp`` next to the encoders: this arch keeps both (LAVIS'
    feature extractor drops the head), so ``forward`` trains ITC at ``temp`` plus ITM with hard
    negatives and ``rerank`` is available.
    """

    TASK_METHODS = ("extract_features", "encode_for_retrieval", "rerank")

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        tokenizer: str = "bert-base-uncased",
        embed_dim: int = 256,
        max_txt_len: int = 35,
    ):
        super().__init__(vision_config, text_config, tokenizer, embed_dim, max_txt_len)
        self.temp = nn.Parameter(torch.tensor(0.07))

    def temperature(self) -> torch.Tensor:
        """The learned ITC temperature, clamped to [0.001, 0.5] (LAVIS) before each use in training."""
        if self.training:
            with torch.no_grad():
                self.temp.clamp_(0.001, 0.5)
        return self.temp
