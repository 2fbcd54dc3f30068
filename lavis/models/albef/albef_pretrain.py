"""ALBEF pre-training (``albef_pretrain``): ITC with momentum distillation, ITM, MLM.

Model types: ``tiny`` (random init, in-repo vocabulary) and ``base`` (LAVIS' ``albef_pretrain`` /
``base``: ViT-B/16 at 224 px, a 6 + 6 layer BERT-base with its LM head; weights ``ALBEF.pth``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from lavis.common.dist import all_gather_tensor
from lavis.common.registry import registry
from lavis.models.albef.contrastive import AlbefContrastive
from lavis.models.albef.encoders import tied_lm_head
from lavis.models.alignment import Momentum, rampup, soft_cross_entropy
from lavis.models.base_model import ModelOutput


@registry.register_model("albef_pretrain")
class AlbefPretrain(AlbefContrastive):
    """ALBEF pre-training model: the contrastive model, an LM head on the text encoder
    (``mlm_head``, tied to the word embeddings), momentum copies and feature queues.

    Args:
        vision_config, text_config, fusion_layer, tokenizer, max_txt_len, embed_dim, temp:
            :class:`~lavis.models.albef.contrastive.AlbefContrastive`'s.
        queue_size: momentum features kept as extra contrastive negatives (a multiple of the
            global batch size).
        momentum: of the momentum copies' moving average.
        alpha: weight of the momentum model's soft targets in ITC and MLM (ramped up over the first
            two epochs of a runner's training, from ``train_progress``).
        mlm_mask_prob: share of text tokens masked for MLM (of those, 80% become ``[MASK]``, 10% a
            random token, 10% stay).
    """

    image_queue: torch.Tensor
    text_queue: torch.Tensor
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
        mlm_mask_prob: float = 0.15,
    ):
        super().__init__(vision_config, text_config, fusion_layer, tokenizer, max_txt_len, embed_dim, temp)
        self.mlm_head = tied_lm_head(self.text_encoder)
        self.alpha = float(alpha)
        self.mlm_mask_prob = float(mlm_mask_prob)
        self.queue_size = int(queue_size)
        self.momentum = Momentum(
            self, ["visual_encoder", "text_encoder", "mlm_head", "vision_proj", "text_proj"], momentum
        )
        head_m: Any = self.get_submodule("mlm_head_m")
        text_m: Any = self.get_submodule("text_encoder_m")
        head_m.predictions.decoder.weight = text_m.embeddings.word_embeddings.weight  # the copy keeps the tie
        self.register_buffer("image_queue", F.normalize(torch.randn(embed_dim, queue_size), dim=0))
        self.register_buffer("text_queue", F.normalize(torch.randn(embed_dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, image_feat: torch.Tensor, text_feat: torch.Tensor) -> None:
        """Replace the oldest queue entries by this step's momentum features (of every rank)."""
        image_feat, text_feat = all_gather_tensor(image_feat), all_gather_tensor(text_feat)
        n, ptr = image_feat.shape[0], int(self.queue_ptr)
        if self.queue_size % n:
            raise ValueError(f"queue_size={self.queue_size} must be a multiple of the global batch size {n}")
        self.image_queue[:, ptr:ptr + n] = image_feat.t()
        self.text_queue[:, ptr:ptr + n] = text_feat.t()
        self.queue_ptr[0] = (ptr + n) % self.queue_size

    def mask_tokens(self, ids: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """MLM inputs and labels [B, L]: each token but [PAD] and [CLS] is chosen with probability
        ``mlm_mask_prob`` (at least one per batch, so the loss is defined); chosen tokens become
        [MASK] (80%), a random token (10%) or stay (10%); labels are -100 where not chosen."""
        tok = self.tokenizer
        maskable = (ids != tok.pad_token_id) & (ids != tok.cls_token_id)
        draw = torch.rand(ids.shape, generator=generator).to(ids.device)
        chosen = (draw < self.mlm_mask_prob) & maskable
        if not bool(chosen.any()):
            chosen = (draw == draw.masked_fill(~maskable, 2.0).min()) & maskable
        labels = ids.masked_fill(~chosen, -100)
        kind = torch.rand(ids.shape, generator=generator).to(ids.device)
        inputs = ids.masked_fill(chosen & (kind < 0.8), tok.mask_token_id)
        random_ids = torch.randint(len(tok), ids.shape, generator=generator).to(ids.device)
        swap = chosen & (kind >= 0.8) & (kind < 0.9)
        return torch.where(swap, random_ids, inputs), labels

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """``samples``: ``image`` [B, 3, H, W], ``text_input`` B captions (pair i is positive).

        Returns ``loss`` = ITC + ITM + MLM; ``extras``: ``loss_itc``, ``loss_itm``, ``loss_mlm``.
        """
        image = samples["image"]
        alpha = rampup(self.alpha, self.train_progress, 2)
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        image_states = self.encode_image(image)
        image_feat = self.image_feat(image_states)
        ids, mask = self.tokenize(samples["text_input"])
        text_states = self.text_encoder.forward_text(ids, mask)
        text_feat = self.text_feat(text_states)
        b = image.shape[0]

        with torch.no_grad():
            self.momentum.update(self)
            text_m: Any = self.get_submodule("text_encoder_m")
            image_states_m = self.encode_image(image, momentum=True)
            image_feat_m = self.image_feat(image_states_m, momentum=True)
            text_feat_m = self.text_feat(text_m.forward_text(ids, mask), momentum=True)
            image_feat_all = torch.cat([image_feat_m.t(), self.image_queue.clone()], dim=1)
            text_feat_all = torch.cat([text_feat_m.t(), self.text_queue.clone()], dim=1)
            hard = torch.zeros(b, image_feat_all.shape[1], device=self.device)
            hard.fill_diagonal_(1.0)
            i2t_targets = alpha * F.softmax(image_feat_m @ text_feat_all / self.temp, dim=1) + (1 - alpha) * hard
            t2i_targets = alpha * F.softmax(text_feat_m @ image_feat_all / self.temp, dim=1) + (1 - alpha) * hard

        sim_i2t = image_feat @ text_feat_all / self.temp
        sim_t2i = text_feat @ image_feat_all / self.temp
        loss_itc = (soft_cross_entropy(sim_i2t, i2t_targets) + soft_cross_entropy(sim_t2i, t2i_targets)) / 2
        self.enqueue(image_feat_m, text_feat_m)

        positive = torch.eye(b, dtype=torch.bool, device=self.device)
        loss_itm = self.itm_loss(image_states, text_states, mask, sim_i2t[:, :b], sim_t2i[:, :b], positive)

        masked_ids, labels = self.mask_tokens(ids)
        logits = self.mlm_head(self.text_encoder(masked_ids, mask, image_states))
        with torch.no_grad():
            head_m: Any = self.get_submodule("mlm_head_m")
            soft = F.softmax(head_m(text_m(masked_ids, mask, image_states_m)), dim=-1)
        scored = labels != -100
        ce = F.cross_entropy(logits[scored], labels[scored])
        distill = -(F.log_softmax(logits[scored], dim=-1) * soft[scored]).sum(dim=-1).mean()
        loss_mlm = (1 - alpha) * ce + alpha * distill
        return ModelOutput(
            loss=loss_itc + loss_itm + loss_mlm,
            extras={"loss_itc": loss_itc.detach(), "loss_itm": loss_itm.detach(), "loss_mlm": loss_mlm.detach()},
        )
