"""ALBEF multimodal classification (``albef_classification``): SNLI-VE entailment.

The hypothesis is encoded with the image by all text layers; a two-layer MLP on the [CLS] state
gives one logit per class (SNLI-VE: 3). Trained with cross entropy mixed with a momentum model's
soft predictions, as LAVIS.

Model types: ``tiny`` (random init, in-repo vocabulary) and ``ve`` (LAVIS' SNLI-VE finetune;
ViT-B/16 at 384 px, a 6 + 6 layer BERT-base).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lavis.common.registry import registry
from lavis.models.albef.base import AlbefBase
from lavis.models.alignment import Momentum, distilled_cross_entropy, rampup
from lavis.models.base_model import ModelOutput


def classification_head(hidden: int, num_classes: int) -> nn.Sequential:
    """ALBEF's classifier on the multimodal [CLS] state: Linear, ReLU, Linear (``cls_head.0``, ``cls_head.2``)."""
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))



class HeadClassifier(AlbefBase):
    """An ALBEF arch with a trained classification head: subclasses give ``logits(samples, momentum)``;
    training is cross entropy distilled from the momentum model's logits (``alpha`` ramped up over
    ``ALPHA_RAMPUP_EPOCHS`` of a runner's training, from ``train_progress``)."""

    TASK_METHODS = ("predict_class",)
    ALPHA_RAMPUP_EPOCHS: ClassVar[int] = 1
    momentum: Momentum | None
    alpha: float

    def logits(self, samples: Mapping[str, Any], momentum: bool = False) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """``samples``: the images and ``text_input`` the arch reads, ``label`` [B] class ids."""
        labels = torch.as_tensor(samples["label"], device=self.device)
        logits = self.logits(samples)
        logits_m = None
        if self.momentum is not None:
            with torch.no_grad():
                self.momentum.update(self)
                logits_m = self.logits(samples, momentum=True)
        alpha = rampup(self.alpha, self.train_progress, self.ALPHA_RAMPUP_EPOCHS)
        loss = distilled_cross_entropy(logits, labels, logits_m, alpha)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        return ModelOutput(loss=loss, extras={"accuracy": accuracy.detach()})

    @torch.no_grad()
    def predict_class(self, samples: dict[str, Any], class_names: list[str] | None = None) -> torch.Tensor:
        """Logits [B, num_classes]; ``class_names`` is ignored (the head is trained)."""
        return self.logits(samples)


@registry.register_model("albef_classification")
class AlbefClassification(HeadClassifier):
    """ALBEF image-text classifier.

    Args:
        vision_config, text_config, fusion_layer, tokenizer, max_txt_len: the encoders
            (:class:`~lavis.models.albef.base.AlbefBase`).
        num_classes: classes of the head (SNLI-VE: 3, entailment / neutral / contradiction in the
            data set's label order).
        momentum, alpha, use_distill: momentum distillation (``alpha`` ramped up over the first
            epoch of a runner's training, from ``train_progress``).
    """


    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        fusion_layer: int,
        tokenizer: str,
        max_txt_len: int,
        num_classes: int = 3,
        momentum: float = 0.995,
        alpha: float = 0.4,
        use_distill: bool = True,
    ):
        super().__init__(vision_config, text_config, fusion_layer, tokenizer, max_txt_len)
        self.cls_head = classification_head(self.text_config.hidden_size, int(num_classes))
        self.alpha = float(alpha)
        self.momentum = (
            Momentum(self, ["visual_encoder", "text_encoder", "cls_head"], momentum) if use_distill else None
        )

    def logits(self, samples: Mapping[str, Any], momentum: bool = False) -> torch.Tensor:
        """Class logits [B, num_classes] of ``samples["image"]`` and ``samples["text_input"]``."""
        suffix = "_m" if momentum else ""
        ids, mask = self.tokenize(samples["text_input"])
        image_states = self.encode_image(samples["image"], momentum=momentum)
        states = self.get_submodule("text_encoder" + suffix)(ids, mask, image_states)
        return self.get_submodule("cls_head" + suffix)(states[:, 0, :])
