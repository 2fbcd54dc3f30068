"""BLIP image-text retrieval (``blip_retrieval``): ITC with momentum distillation and queues, plus
ITM with hard negatives, as LAVIS' ``blip_retrieval`` trains it.

Inference (``encode_for_retrieval``, ``rerank``, ``extract_features``) is that of
:class:`~lavis.models.blip.image_text.BlipImageTextMatching`. Training adds, as LAVIS does:

* momentum copies of the ViT, text encoder and both projections (``*_m``), moved towards the
  model by ``momentum`` after each step's update, and queues of their last ``queue_size`` image and
  text embeddings with the image ids they show (``image_queue``, ``text_queue``, ``idx_queue``);
* ITC of the model's embeddings against the momentum embeddings of the batch and the queue, with
  targets ``alpha * softmax(momentum similarities) + (1 - alpha) * ground truth``; the ground truth
  spreads over every column that shows the row's image (by ``samples["image_id"]``);
* ``alpha`` ramped up linearly over the first two epochs of a runner's training (LAVIS' ramp,
  from :attr:`~lavis.models.base_model.BaseModel.train_progress`), else used as it is;
* ITM with one hard negative image per text and one hard negative text per image, drawn from the
  in-batch ITC similarities (negatives come from the same rank, LAVIS' default
  ``negative_all_rank=False``); under DDP the queues take every rank's embeddings.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from lavis.common.dist import all_gather_tensor
from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.models.alignment import Momentum, itc_targets, rampup, soft_cross_entropy
from lavis.models.base_model import ModelOutput
from lavis.models.blip.image_text import BlipFeatureExtractor



@registry.register_model("blip_retrieval")
class BlipRetrieval(BlipFeatureExtractor):
    """BLIP retrieval model (LAVIS ``blip_retrieval``: types ``coco`` and ``flickr``).

    Args (besides :class:`~lavis.models.blip.image_text.BlipFeatureExtractor`'s: the network, the
    ITM head and the learned temperature ``temp``):
        queue_size: embeddings kept in each queue (LAVIS: 57600).
        alpha: weight of the momentum model's soft targets in the ITC targets.
        momentum: of the momentum encoders' moving average.
    """

    TASK_METHODS = ("extract_features", "encode_for_retrieval", "rerank")
    # the momentum copies (Momentum registers them as submodules)
    vision_model_m: Any
    text_encoder_m: Any
    vision_proj_m: nn.Module
    text_proj_m: nn.Module
    image_queue: torch.Tensor  # [embed_dim, queue_size], L2-normalised columns
    text_queue: torch.Tensor  # [embed_dim, queue_size]
    idx_queue: torch.Tensor  # [1, queue_size] image ids (-100: empty)
    queue_ptr: torch.Tensor  # [1] the next column to write

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        tokenizer: str = "bert-base-uncased",
        embed_dim: int = 256,
        max_txt_len: int = 35,
        queue_size: int = 57600,
        alpha: float = 0.4,
        momentum: float = 0.995,
    ):
        super().__init__(vision_config, text_config, tokenizer, embed_dim, max_txt_len)
        if queue_size < 1 or not 0.0 <= alpha <= 1.0 or not 0.0 <= momentum <= 1.0:
            raise ConfigError(
                [f"model: queue_size must be >= 1 and alpha, momentum in [0, 1]; got queue_size={queue_size}, "
                 f"alpha={alpha}, momentum={momentum}"]
            )
        self.momentum_copies = Momentum(self, ["vision_model", "text_encoder", "vision_proj", "text_proj"], momentum)
        self.register_buffer("image_queue", F.normalize(torch.randn(embed_dim, queue_size), dim=0))
        self.register_buffer("text_queue", F.normalize(torch.randn(embed_dim, queue_size), dim=0))
        self.register_buffer("idx_queue", torch.full((1, queue_size), -100, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.queue_size = int(queue_size)
        self.alpha = float(alpha)
        self.momentum = float(momentum)

    def momentum_update(self) -> None:
        """``p_m <- momentum * p_m + (1 - momentum) * p`` for every momentum parameter."""
        self.momentum_copies.update(self)

    @torch.no_grad()
    def enqueue(self, image_feat: torch.Tensor, text_feat: torch.Tensor, image_id: torch.Tensor) -> None:
        """Write the (every rank's) momentum embeddings [B, D] and image ids [B] at the queue pointer,
        wrapping around, and move the pointer on."""
        image_feat, text_feat, image_id = all_gather_tensor(image_feat), all_gather_tensor(text_feat), all_gather_tensor(image_id)
        n = image_feat.shape[0]
        if n > self.queue_size:
            raise ValueError(f"a step's {n} pairs (all ranks) do not fit the queue of {self.queue_size}; raise queue_size")
        ptr = int(self.queue_ptr)
        cols = (ptr + torch.arange(n, device=image_feat.device)) % self.queue_size
        # (under bf16 autocast the features are bf16; the queues stay fp32)
        self.image_queue[:, cols] = image_feat.t().to(self.image_queue.dtype)
        self.text_queue[:, cols] = text_feat.t().to(self.text_queue.dtype)
        self.idx_queue[:, cols] = image_id.view(1, -1).to(self.idx_queue.dtype)
        self.queue_ptr[0] = (ptr + n) % self.queue_size

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """ITC (momentum distillation over the queues) + ITM (hard negatives) loss.

        Args:
            samples: ``"image"`` [B, 3, H, W]; ``"text_input"`` B texts; ``"image_id"`` [B] (int) the
                image each pair shows (pairs of one image are positives of each other, also in the
                queue).

        Returns:
            ``loss`` = ``loss_itc + loss_itm``; both are in ``extras``.
        """
        if "image_id" not in samples:
            raise ValueError("blip_retrieval's forward needs samples['image_id'] [B]: the image each pair shows")
        loss_itc, loss_itm, _, _ = self.itc_itm_losses(samples, torch.as_tensor(samples["image_id"]))
        return ModelOutput(loss=loss_itc + loss_itm, extras={"loss_itc": loss_itc.detach(), "loss_itm": loss_itm.detach()})

    def itc_itm_losses(
        self, samples: Mapping[str, Any], image_id: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """The ITC loss (momentum distillation over the queues; the momentum encoders are moved and
        the queues filled on the way) and the ITM loss (hard negatives) of a batch.

        Args:
            samples: ``"image"`` [B, 3, H, W], ``"text_input"`` B texts.
            image_id: [B] the image each pair shows, or ``None``: every pair its own image and every
                queue column a negative (LAVIS' pre-training); the queue then records no ids (-100).

        Returns:
            ``loss_itc``, ``loss_itm``, the ViT states [B, 1 + patches, width] and the tokenized
            texts (``input_ids``, ``attention_mask`` [B, max_txt_len], ``[CLS]`` first), for more heads.
        """
        alpha = rampup(self.alpha, self.train_progress, 2)
        temp = self.temperature()
        image_embeds = self.encode_image(samples["image"])
        image_feat = self.image_feat(image_embeds)
        text = self.tokenize(samples["text_input"], padding="max_length")
        text_feat = self.text_feat(self.encode_text(text.input_ids, text.attention_mask))
        batch = image_feat.shape[0]
        if image_id is None:
            targets = torch.cat([torch.eye(batch), torch.zeros(batch, self.queue_size)], dim=1).to(self.device)
            queued_id = torch.full((batch,), -100, dtype=torch.long, device=self.device)
        else:
            image_id = image_id.view(-1).long().to(self.device)
            targets = itc_targets(image_id, batch, torch.cat([image_id, self.idx_queue.view(-1)]))
            queued_id = image_id

        with torch.no_grad():
            self.momentum_update()
            image_embeds_m = self.vision_model_m(pixel_values=samples["image"].to(self.device)).last_hidden_state
            image_feat_m = F.normalize(self.vision_proj_m(image_embeds_m[:, 0, :]), dim=-1)
            text_embeds_m = self.text_encoder_m(input_ids=text.input_ids, attention_mask=text.attention_mask).last_hidden_state
            text_feat_m = F.normalize(self.text_proj_m(text_embeds_m[:, 0, :]), dim=-1)
            image_feat_m_all = torch.cat([image_feat_m.t(), self.image_queue.clone()], dim=1)
            text_feat_m_all = torch.cat([text_feat_m.t(), self.text_queue.clone()], dim=1)
            targets_i2t = alpha * F.softmax(image_feat_m @ text_feat_m_all / temp, dim=1) + (1 - alpha) * targets
            targets_t2i = alpha * F.softmax(text_feat_m @ image_feat_m_all / temp, dim=1) + (1 - alpha) * targets
        sim_i2t = image_feat @ text_feat_m_all / temp
        sim_t2i = text_feat @ image_feat_m_all / temp
        loss_itc = (soft_cross_entropy(sim_i2t, targets_i2t) + soft_cross_entropy(sim_t2i, targets_t2i)) / 2
        self.enqueue(image_feat_m, text_feat_m, queued_id)

        with torch.no_grad():
            in_batch = image_feat @ text_feat.t() / temp
        loss_itm, _ = self.itm_loss(
            image_embeds, text.input_ids, text.attention_mask, in_batch, in_batch.t(), image_id
        )
        return loss_itc, loss_itm, image_embeds, text

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """As the image-text archs; a LAVIS pre-training checkpoint (the ``pretrained`` source) has
        no ``idx_queue``: it gets an empty one (all -100), as a new model has."""
        from lavis.models.blip import convert

        if convert.is_lavis_layout(state_dict) and "idx_queue" not in state_dict and "image_queue" in state_dict:
            state_dict = {**state_dict, "idx_queue": torch.full_like(self.idx_queue, -100)}
        return super().convert_state_dict(state_dict)

