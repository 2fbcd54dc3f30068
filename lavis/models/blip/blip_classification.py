"""BLIP multimodal classification (``blip_classification``): a class for each (image, text) pair,
e.g. SNLI-VE (entailment, neutral, contradiction).

The text encoder reads ``[ENC] text`` attending to the image; a two-layer MLP (``cls_head``) on the
``[ENC]`` state gives the logits. Training is LAVIS' ``blip_classification``: cross entropy, and
with ``use_distill`` the momentum copies of the ViT, text encoder and head (``*_m``) give soft
targets: ``loss = (1 - alpha) * CE(logits, label) + alpha * CE(logits, softmax(momentum logits))``,
``alpha`` ramped up linearly over the first epoch of a runner's training (LAVIS' ramp, from
``train_progress``), else used as it is.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.models.alignment import Momentum, distilled_cross_entropy, rampup
from lavis.models.base_model import ModelOutput
from lavis.models.blip.image_text import BlipEncoders


@registry.register_model("blip_classification")
class BlipClassification(BlipEncoders):
    """BLIP (image, text) classifier.

    Args (besides :class:`~lavis.models.blip.image_text.BlipEncoders`'):
        num_classes: outputs of ``cls_head``.
        use_distill: train with momentum distillation (adds the ``*_m`` copies).
        momentum: of the momentum copies' moving average.
        alpha: weight of the momentum soft targets.
    """

    TASK_METHODS = ("predict_class",)
    # the momentum copies, with use_distill (Momentum registers them as submodules)
    vision_model_m: Any
    text_encoder_m: Any
    cls_head_m: nn.Module

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        num_classes: int,
        tokenizer: str = "bert-base-uncased",
        max_txt_len: int = 40,
        use_distill: bool = True,
        momentum: float = 0.995,
        alpha: float = 0.4,
    ):
        super().__init__(vision_config, text_config, tokenizer, max_txt_len)
        if num_classes < 2:
            raise ConfigError([f"model.num_classes: {num_classes}; a classifier needs at least 2"])
        hidden = int(self.text_encoder.config.hidden_size)
        self.cls_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        self.use_distill = bool(use_distill)
        self.momentum = float(momentum)
        self.alpha = float(alpha)
        if self.use_distill:
            self.momentum_copies = Momentum(self, ["vision_model", "text_encoder", "cls_head"], momentum)

    def logits(self, samples: Mapping[str, Any], momentum: bool = False) -> torch.Tensor:
        """Class logits [B, num_classes] of ``samples["image"]`` [B, 3, H, W] and ``samples["text_input"]``
        (B texts); with ``momentum`` from the momentum copies."""
        vision, text_encoder, head = (
            (self.vision_model_m, self.text_encoder_m, self.cls_head_m) if momentum
            else (self.vision_model, self.text_encoder, self.cls_head)
        )
        image_embeds = vision(pixel_values=samples["image"].to(self.device)).last_hidden_state
        text = self.tokenize(samples["text_input"])
        ids = text.input_ids.clone()
        ids[:, 0] = self.tokenizer.enc_token_id
        atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        states = text_encoder(
            input_ids=ids, attention_mask=text.attention_mask, encoder_hidden_states=image_embeds,
            encoder_attention_mask=atts,
        ).last_hidden_state
        return head(states[:, 0, :])

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """Classification loss against ``samples["label"]`` [B] (with momentum distillation if set)."""
        if "label" not in samples:
            raise ValueError("blip_classification's forward needs samples['label'] [B], the class of each pair")
        logits = self.logits(samples)
        label = torch.as_tensor(samples["label"]).long().to(logits.device)
        logits_m = None
        if self.use_distill:
            with torch.no_grad():
                self.momentum_copies.update(self)
                logits_m = self.logits(samples, momentum=True)
        loss = distilled_cross_entropy(logits, label, logits_m, rampup(self.alpha, self.train_progress, 1))
        return ModelOutput(loss=loss, extras={"logits": logits.detach()})

    @torch.no_grad()
    def predict_class(self, samples: dict[str, Any], class_names: list[str] | None = None) -> torch.Tensor:
        """Logits [B, num_classes]; a trained head, so ``class_names`` is ignored."""
        return self.logits(samples)
