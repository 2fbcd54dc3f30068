"""ALBEF image-text retrieval (``albef_retrieval``): ITC with momentum distillation + ITM.

Model types: ``tiny`` (random init, in-repo vocabulary), ``coco`` and ``flickr`` (ALBEF fine-tuned
on COCO / Flickr30k retrieval by LAVIS; ViT-B/16 at 384 px, 6 + 6 layer BERT-base).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from lavis.common.dist import all_gather_tensor
from lavis.common.registry import registry
from lavis.models.albef.contrastive import AlbefContrastive
from lavis.models.alignment import Momentum, itc_targets, rampup, soft_cross_entropy
from lavis.models.base_model import ModelOutput



@registry.register_model("albef_retrieval")
class AlbefRetrieval(AlbefContrastive):
    """ALBEF retrieval: the contrastive model with momentum encoders and feature queues.

    Args:
        queue_size: momentum features kept as extra contrastive negatives (a multiple of the
            global batch size).
        momentum: of the momentum encoders' moving average.
        alpha: weight of the momentum model's soft targets in ITC (ramped up over the first two
            epochs of a runner's training, from ``train_progress``).
        use_distill: use the soft targets (else the ITC targets are the positives alone).
        vision_config, text_config, fusion_layer, tokenizer, max_txt_len, embed_dim, temp:
            :class:`~lavis.models.albef.contrastive.AlbefContrastive`'s.
    """

    image_queue: torch.Tensor
    text_queue: torch.Tensor
    idx_queue: torch.Tensor
    queue_ptr: torch.Tensor

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        fusion_layer: int,
        tokenizer: str,
        max_txt_len: int,
        embed_dim: int,
        temp: float,
        queue_size: int = 65536,
        momentum: float = 0.995,
        alpha: float = 0.4,
        use_distill: bool = True,
    ):
        super().__init__(vision_config, text_config, fusion_layer, tokenizer, max_txt_len, embed_dim, temp)
        self.alpha = float(alpha)
        self.use_distill = bool(use_distill)
        self.queue_size = int(queue_size)
        self.momentum = Momentum(self, ["visual_encoder", "text_encoder", "vision_proj", "text_proj"], momentum)
        embed_dim = self.vision_proj.out_features
        self.register_buffer("image_queue", F.normalize(torch.randn(embed_dim, queue_size), dim=0))
        self.register_buffer("text_queue", F.normalize(torch.randn(embed_dim, queue_size), dim=0))
        self.register_buffer("idx_queue", torch.full((1, queue_size), -100))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, image_feat: torch.Tensor, text_feat: torch.Tensor, idx: torch.Tensor) -> None:
        """Replace the oldest queue entries by this step's momentum features (of every rank)."""
        image_feat, text_feat, idx = all_gather_tensor(image_feat), all_gather_tensor(text_feat), all_gather_tensor(idx)
        n, ptr = image_feat.shape[0], int(self.queue_ptr)
        if self.queue_size % n:
            raise ValueError(f"queue_size={self.queue_size} must be a multiple of the global batch size {n}")
        self.image_queue[:, ptr:ptr + n] = image_feat.t()
        self.text_queue[:, ptr:ptr + n] = text_feat.t()
        self.idx_queue[:, ptr:ptr + n] = idx.view(1, -1)
        self.queue_ptr[0] = (ptr + n) % self.queue_size

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """``samples``: ``image`` [B, 3, H, W], ``text_input`` B strings, ``image_id`` [B] (texts of
        one image are positives of each other; defaults to all distinct).

        Returns ``loss`` = ITC + ITM; ``extras``: ``loss_itc``, ``loss_itm``.
        """
        image = samples["image"]
        b = image.shape[0]
        idx = samples.get("image_id")
        idx = (torch.arange(b) if idx is None else torch.as_tensor(idx)).view(-1, 1).to(self.device)
        alpha = rampup(self.alpha, self.train_progress, 2)
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)

        image_states = self.encode_image(image)
        image_feat = self.image_feat(image_states)
        ids, mask = self.tokenize(samples["text_input"])
        text_states = self.text_encoder.forward_text(ids, mask)
        text_feat = self.text_feat(text_states)

        idx_all = torch.cat([idx.t(), self.idx_queue.clone()], dim=1)
        sim_targets = itc_targets(idx.view(-1), b, idx_all.view(-1))

        with torch.no_grad():
            self.momentum.update(self)
            momentum_text: Any = self.get_submodule("text_encoder_m")
            image_feat_m = self.image_feat(self.encode_image(image, momentum=True), momentum=True)
            text_feat_m = self.text_feat(momentum_text.forward_text(ids, mask), momentum=True)
            image_feat_all = torch.cat([image_feat_m.t(), self.image_queue.clone()], dim=1)
            text_feat_all = torch.cat([text_feat_m.t(), self.text_queue.clone()], dim=1)
            if self.use_distill:
                i2t_targets = alpha * F.softmax(image_feat_m @ text_feat_all / self.temp, dim=1) + (1 - alpha) * sim_targets
                t2i_targets = alpha * F.softmax(text_feat_m @ image_feat_all / self.temp, dim=1) + (1 - alpha) * sim_targets
            else:
                i2t_targets = t2i_targets = sim_targets

        sim_i2t = image_feat @ text_feat_all / self.temp
        sim_t2i = text_feat @ image_feat_all / self.temp
        loss_itc = (soft_cross_entropy(sim_i2t, i2t_targets) + soft_cross_entropy(sim_t2i, t2i_targets)) / 2
        self.enqueue(image_feat_m, text_feat_m, idx)

        positive = idx == idx.t()
        loss_itm = self.itm_loss(image_states, text_states, mask, sim_i2t[:, :b], sim_t2i[:, :b], positive)
        return ModelOutput(loss=loss_itc + loss_itm, extras={"loss_itc": loss_itc.detach(), "loss_itm": loss_itm.detach()})
