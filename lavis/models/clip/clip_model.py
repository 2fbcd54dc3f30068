"""CLIP (``clip`` and ``clip_feature_extractor``), on open_clip's ``CLIP`` network.

The network, its tokenizer (open_clip's BPE, whose vocabulary ships inside the package) and the
contrastive loss are open_clip's; this class adds the lavis contract around them: image and text
features, ITC-only retrieval embeddings, zero-shot classification with prompt templates (the text
classifier cached per class-name list) and the training loss.

LAVIS registers one class under both names, ``clip`` and ``clip_feature_extractor``; so does
lavis, and both names have the same model types: ``tiny`` (random init, for tests) and the OpenAI
weights ``RN50``, ``ViT-B-32``, ``ViT-B-16``, ``ViT-L-14`` and ``ViT-L-14-336``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F

from lavis.common.errors import UnknownNameError
from lavis.common.registry import registry, shipped_types
from lavis.models.base_model import BaseModel, ConvertedStateDict, ModelOutput, RetrievalFeatures
from lavis.models.clip import convert
from lavis.models.clip.zero_shot import build_classifier, get_templates


@dataclass
class ClipFeatures:
    """What :meth:`Clip.extract_features` returns for ``B`` items (``None`` for the other modality).

    ``*_embeds``: ``[B, D]`` projected embeddings; ``*_embeds_proj``: the same, L2-normalised (what
    CLIP compares, as LAVIS names them).
    """

    image_embeds: torch.Tensor | None = None
    image_embeds_proj: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    text_embeds_proj: torch.Tensor | None = None


@registry.register_model("clip_feature_extractor")
@registry.register_model("clip")
class Clip(BaseModel):
    """CLIP: an image encoder and a text encoder trained to agree (no fusion, no re-ranking).

    Args:
        model_name: an open_clip model config (``open_clip.list_models()``): ``RN50``, ``ViT-B-32``,
            ``ViT-B-16``, ``ViT-L-14``, ``ViT-L-14-336``, ...
        model_config: the open_clip config itself (``embed_dim``, ``vision_cfg``, ``text_cfg``),
            used instead of ``model_name``'s (the ``tiny`` type gives one).
        quick_gelu: the activation OpenAI's weights were trained with (true for them).
        templates: the default prompt templates of :meth:`predict_class`: a set name
            (``openai_imagenet``: OpenAI's 80 ImageNet templates; ``simple_imagenet``) or format
            strings with one ``{}``.
        max_logit_scale: the training loss caps the learned temperature ``exp(logit_scale)`` at
            this value, as CLIP's training does (100).
    """

    TASK_METHODS = ("extract_features", "predict_class", "encode_for_retrieval")
    PRETRAINED_MODEL_CONFIG_DICT: ClassVar[dict[str, str]] = shipped_types("models", "clip")

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        model_config: Mapping[str, Any] | None = None,
        quick_gelu: bool = False,
        templates: str | list[str] = "openai_imagenet",
        max_logit_scale: float = 100.0,
    ):
        super().__init__()
        import open_clip
        from open_clip.model import CLIP
        from open_clip.tokenizer import SimpleTokenizer

        if model_config is None:
            found = open_clip.get_model_config(model_name)
            if found is None:
                raise UnknownNameError("open_clip model config (model.model_name)", model_name, open_clip.list_models())
            model_config = found
        cfg = dict(model_config)
        self.clip = CLIP(**cfg, quick_gelu=quick_gelu)
        self.context_length = int(self.clip.context_length)
        self.tokenizer = SimpleTokenizer(context_length=self.context_length)
        self.image_size = int(dict(cfg["vision_cfg"]).get("image_size", 224))
        self.templates = get_templates(templates)
        self.max_logit_scale = float(max_logit_scale)
        self._classifiers: dict[tuple[tuple[str, ...], Any], torch.Tensor] = {}

    # -- VLM seam ---------------------------------------------------------------------------------
    @property
    def vision_tower(self) -> torch.nn.Module:
        """The image encoder (open_clip's ``VisionTransformer`` or ``ModifiedResNet``)."""
        return self.clip.visual

    # -- building blocks ------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``[N, context_length]`` (start and end tokens added, longer texts truncated)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        return self.tokenizer(list(texts)).to(self.device)

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Projected image embeddings ``[B, D]`` of normalised pixels ``image`` ``[B, 3, H, W]``."""
        return self.clip.encode_image(image.to(self.device), normalize=normalize)

    def encode_text(self, texts: Sequence[str], normalize: bool = False) -> torch.Tensor:
        """Projected text embeddings ``[N, D]`` (at each text's end token)."""
        return self.clip.encode_text(self.tokenize(texts), normalize=normalize)

    @property
    def logit_scale(self) -> torch.Tensor:
        """The learned temperature ``exp(logit_scale)`` (a scalar; 100 for OpenAI's weights)."""
        return self.clip.logit_scale.exp()

    # -- the model contract -----------------------------------------------------------------------
    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """Symmetric contrastive (InfoNCE) loss of a batch of matching pairs.

        Args:
            samples: ``"image"`` ``[B, 3, H, W]`` and ``"text_input"`` B texts; pair ``i`` matches.

        Returns:
            ``loss``: the mean of the image->text and text->image cross entropies over the
            ``scale * cosine`` logits, with ``scale = exp(logit_scale)`` capped at
            ``max_logit_scale``. Under DDP (open_clip's ``ClipLoss``) every rank's features are
            gathered so each item is contrasted with the whole global batch.
            ``extras["logit_scale"]``: the scale used.
        """
        from open_clip.loss import ClipLoss

        image = self.encode_image(samples["image"], normalize=True)
        text = self.encode_text(samples["text_input"], normalize=True)
        scale = self.logit_scale.clamp(max=self.max_logit_scale)
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        loss = ClipLoss(rank=rank, world_size=world)(image, text, scale)
        return ModelOutput(loss=loss, extras={"logit_scale": scale.detach()})

    @torch.no_grad()
    def extract_features(self, samples: dict[str, Any], mode: str = "multimodal") -> ClipFeatures:
        """Image (``mode="image"``, from ``samples["image"]``) or text (``mode="text"``, from
        ``samples["text_input"]``) embeddings, projected and normalised (see :class:`ClipFeatures`).

        CLIP has no multimodal (fused) features: ``mode="multimodal"`` raises NotImplementedError.
        """
        if mode == "image":
            emb = self.encode_image(samples["image"])
            return ClipFeatures(image_embeds=emb, image_embeds_proj=F.normalize(emb, dim=-1))
        if mode == "text":
            emb = self.encode_text(samples["text_input"])
            return ClipFeatures(text_embeds=emb, text_embeds_proj=F.normalize(emb, dim=-1))
        if mode == "multimodal":
            raise NotImplementedError(
                "CLIP encodes images and texts separately and has no multimodal (fused) features; call "
                "extract_features(samples, mode='image') and extract_features(samples, mode='text') and compare "
                "their *_embeds_proj (cosine similarity)"
            )
        raise ValueError(f"mode must be 'image', 'text' or 'multimodal', got {mode!r}")

    @torch.no_grad()
    def encode_for_retrieval(self, samples: dict[str, Any], modality: str) -> RetrievalFeatures:
        """Normalised embeddings of one side of retrieval; no ``states``: CLIP has no re-ranking (ITC only)."""
        if modality == "image":
            return RetrievalFeatures(embeds=self.encode_image(samples["image"], normalize=True))
        if modality == "text":
            return RetrievalFeatures(embeds=self.encode_text(samples["text_input"], normalize=True))
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")

    @torch.no_grad()
    def zero_shot_classifier(
        self, class_names: Sequence[str], templates: str | Sequence[str] | None = None
    ) -> torch.Tensor:
        """The text classifier ``[D, C]`` of ``class_names`` (see
        :func:`lavis.models.clip.zero_shot.build_classifier`), cached per class-name list and
        template set until the weights can have changed (training mode, loading a checkpoint)."""
        if isinstance(class_names, str) or not class_names:
            raise TypeError(
                "class_names must be a non-empty list of class names (a shipped list: "
                "lavis.models.clip.zero_shot.get_class_names('imagenet'))"
            )
        key = (tuple(class_names), templates if templates is None or isinstance(templates, str) else tuple(templates))
        if key not in self._classifiers:
            prompts = self.templates if templates is None else get_templates(templates)
            self._classifiers[key] = build_classifier(self.encode_text, class_names, prompts)
        return self._classifiers[key]

    @torch.no_grad()
    def predict_class(
        self,
        samples: dict[str, Any],
        class_names: Sequence[str] | None = None,
        templates: str | Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Zero-shot logits ``[B, C]``: ``exp(logit_scale)`` times the cosine similarity of each image
        with each class's text classifier (``templates``: the model's default set if ``None``)."""
        if class_names is None:
            raise ValueError(
                "CLIP classifies zero-shot and needs class_names (e.g. the data set's class names, or "
                "lavis.models.clip.zero_shot.get_class_names('imagenet'))"
            )
        classifier = self.zero_shot_classifier(class_names, templates)
        image = self.encode_image(samples["image"], normalize=True)
        return self.logit_scale * image @ classifier

    def train(self, mode: bool = True) -> "Clip":
        if mode:  # the weights may change: classifiers built from them are stale
            self._classifiers.clear()
        return super().train(mode)

    # -- weights --------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        self._classifiers.clear()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept our layout and the LAVIS / open_clip layout (:mod:`lavis.models.clip.convert`)."""
        if convert.is_open_clip_layout(state_dict):
            return ConvertedStateDict(
                convert.open_clip_to_ours(state_dict), layout="LAVIS / open_clip", original_name=convert.original_name
            )
        return state_dict
