"""ALBEF feature extractor (``albef_feature_extractor``): image, text and multimodal features.

Model types: ``tiny`` (random init, in-repo vocabulary) and ``base`` (ALBEF pre-trained on 14M
images, ViT-B/16 at 224 px and a 6 + 6 layer BERT-base; weights from LAVIS' ``ALBEF.pth``, the
pre-training checkpoint, whose masked-LM head, momentum encoders and queues are left out).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lavis.common.registry import registry
from lavis.models.albef.contrastive import AlbefContrastive
from lavis.models.base_model import ModelOutput


@registry.register_model("albef_feature_extractor")
class AlbefFeatureExtractor(AlbefContrastive):
    """ALBEF's encoders with the contrastive projections and the ITM head.

    ``extract_features`` is what it is for. ``forward`` trains it without momentum encoders or
    queues: in-batch ITC (targets: texts of the same ``image_id``, or the diagonal) plus ITM with
    hard negatives, so the same weights can be fine-tuned on image-text pairs.
    """

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """``samples``: ``image`` [B, 3, H, W], ``text_input`` B strings, optional ``image_id`` [B].

        Returns ``loss`` = ITC + ITM; ``extras``: ``loss_itc``, ``loss_itm``.
        """
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        image_states = self.encode_image(samples["image"])
        ids, mask = self.tokenize(samples["text_input"])
        text_states = self.text_encoder.forward_text(ids, mask)
        image_feat, text_feat = self.image_feat(image_states), self.text_feat(text_states)
        sim_i2t = image_feat @ text_feat.t() / self.temp
        b = sim_i2t.shape[0]
        idx = samples.get("image_id")
        idx = torch.arange(b) if idx is None else torch.as_tensor(idx)
        positive = idx.view(-1, 1).to(self.device) == idx.view(1, -1).to(self.device)
        targets = positive.float() / positive.sum(dim=1, keepdim=True)
        loss_itc = (
            -(F.log_softmax(sim_i2t, dim=1) * targets).sum(1).mean()
            - (F.log_softmax(sim_i2t.t(), dim=1) * targets).sum(1).mean()
        ) / 2
        loss_itm = self.itm_loss(image_states, text_states, mask, sim_i2t, sim_i2t.t(), positive)
        return ModelOutput(loss=loss_itc + loss_itm, extras={"loss_itc": loss_itc.detach(), "loss_itm": loss_itm.detach()})
