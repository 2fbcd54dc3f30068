"""ALBEF NLVR2 (``albef_nlvr``): is a statement true of a pair of images?

Both images go through the ViT; the text encoder's fusion layers come in pairs, the first of a
pair cross-attending to the left image and the second to the right one, with the key and value
projections of the pair shared (ALBEF's two-image fusion). A two-layer MLP on the [CLS] state gives
the logits (false, true).

Model types: ``tiny`` (random init, in-repo vocabulary) and ``nlvr`` (LAVIS' NLVR2 finetune;
ViT-B/16 at 384 px, a BERT-base with 6 text-only and 12 fusion layers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.models.albef.albef_classification import HeadClassifier, classification_head
from lavis.models.alignment import Momentum


@registry.register_model("albef_nlvr")
class AlbefNLVR(HeadClassifier):
    """ALBEF for NLVR2.

    Args:
        vision_config, text_config, fusion_layer, tokenizer, max_txt_len: the encoders
            (:class:`~lavis.models.albef.base.AlbefBase`); the number of fusion layers must be even.
        num_classes: 2 (false, true).
        momentum, alpha, use_distill: momentum distillation (``alpha`` ramped up over the first two
            epochs of a runner's training, from ``train_progress``). The
            momentum model's text encoder is the momentum copy (LAVIS 1.0.2 runs the online one there).
    """

    ALPHA_RAMPUP_EPOCHS = 2

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        fusion_layer: int,
        tokenizer: str,
        max_txt_len: int,
        num_classes: int = 2,
        momentum: float = 0.995,
        alpha: float = 0.4,
        use_distill: bool = True,
    ):
        super().__init__(vision_config, text_config, fusion_layer, tokenizer, max_txt_len)
        layers: Any = self.text_encoder.encoder.layer
        if (len(layers) - fusion_layer) % 2:
            raise ConfigError(
                [f"model.text_config.num_hidden_layers: {len(layers)} layers with fusion_layer={fusion_layer} leave "
                 f"{len(layers) - fusion_layer} fusion layers; NLVR2 pairs them (one per image), so give an even number"]
            )
        for i in range(fusion_layer, len(layers), 2):
            first, second = layers[i].crossattention.self, layers[i + 1].crossattention.self
            first.key, first.value = second.key, second.value
        self.cls_head = classification_head(self.text_config.hidden_size, int(num_classes))
        self.alpha = float(alpha)
        self.momentum = (
            Momentum(self, ["visual_encoder", "text_encoder", "cls_head"], momentum) if use_distill else None
        )

    def logits(self, samples: Mapping[str, Any], momentum: bool = False) -> torch.Tensor:
        """Logits [B, num_classes] of ``samples["image0"]``, ``samples["image1"]`` [B, 3, H, W] and
        ``samples["text_input"]`` (B statements)."""
        suffix = "_m" if momentum else ""
        ids, mask = self.tokenize(samples["text_input"])
        b = ids.shape[0]
        states = self.encode_image(torch.cat([samples["image0"], samples["image1"]], dim=0), momentum=momentum)
        text = self.get_submodule("text_encoder" + suffix)(ids, mask, [states[:b], states[b:]])
        return self.get_submodule("cls_head" + suffix)(text[:, 0, :])
