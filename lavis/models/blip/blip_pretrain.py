"""BLIP pre-training (``blip_pretrain``): ITC + ITM + LM, as LAVIS' ``blip_pretrain`` trains it.

Built on :class:`~lavis.models.blip.blip_retrieval.BlipRetrieval`, which brings the ViT, the text
encoder, the ITC projections with their momentum copies and queues, the learned temperature and
the ITM head with hard negatives. This arch adds the caption decoder (``text_decoder``,
transformers' ``BlipTextLMHeadModel`` reading ``[DEC] text`` and attending to the image) and its
language-modelling loss, label-smoothed as LAVIS' (0.1).

Weight sharing, as LAVIS' ``tie_encoder_decoder_weights`` does it: the text encoder uses the
decoder's parameters for everything but the self-attention (``layer.N.attention``): embeddings,
cross-attention, feed-forward layers and their LayerNorms are one tensor each. The decoder's own
self-attention (causal) and its LM head (tied to the word embeddings) are not shared; neither are
the momentum encoder's parameters, a copy taken after tying.

Model types: ``tiny`` (random init, in-repo vocabulary) and ``base`` (LAVIS' ``blip_pretrain`` /
``base``: ViT-B/16 at 224 px, BERT-base encoder and decoder; weights ``model_base_capfilt_large.pth``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.models.base_model import ModelOutput
from lavis.models.blip.blip_retrieval import BlipRetrieval
from lavis.models.blip.parts import caption_labels, smoothed_token_losses, tie_encoder_to_decoder


@registry.register_model("blip_pretrain")
class BlipPretrain(BlipRetrieval):
    """BLIP pre-training model: :class:`BlipRetrieval`'s ITC and ITM plus the caption decoder's LM loss.

    Args (besides :class:`BlipRetrieval`'s; ``max_txt_len`` defaults to LAVIS' 30 here):
        prompt: captions that start with it (say, from a ``blip_caption`` text processor given this
            prompt) have its tokens left out of the LM loss, as ``blip_caption`` does; other captions
            are scored whole, as LAVIS' pre-training (which never prepends the prompt) scores them.
        label_smoothing: of the LM cross entropy (LAVIS: 0.1).
    """

    TASK_METHODS = ("extract_features", "encode_for_retrieval", "rerank")

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        tokenizer: str = "bert-base-uncased",
        embed_dim: int = 256,
        max_txt_len: int = 30,
        queue_size: int = 57600,
        alpha: float = 0.4,
        momentum: float = 0.995,
        prompt: str = "a picture of ",
        label_smoothing: float = 0.1,
    ):
        super().__init__(vision_config, text_config, tokenizer, embed_dim, max_txt_len, queue_size, alpha, momentum)
        from transformers import BlipTextConfig, BlipTextLMHeadModel

        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError([f"model.label_smoothing: {label_smoothing} must be in [0, 1)"])
        self.text_decoder = BlipTextLMHeadModel(BlipTextConfig(**self.text_cfg))
        self.tied_modules = tie_encoder_to_decoder(self.text_encoder, self.text_decoder.bert)
        with torch.no_grad():  # the momentum encoder starts as a copy of the (now tied) encoder
            for p, p_m in zip(self.text_encoder.parameters(), self.text_encoder_m.parameters()):
                p_m.copy_(p)
        self.prompt = prompt
        self.label_smoothing = float(label_smoothing)
        # [CLS] + the prompt's word pieces ([SEP] is not part of it)
        self.prompt_ids = self.tokenizer(prompt).input_ids[1:-1]
        self.prompt_length = 1 + len(self.prompt_ids)

    # -- LM --------------------------------------------------------------------------------------
    def lm_labels(self, input_ids: torch.Tensor) -> torch.Tensor:
        """LM labels [B, L] of decoder ids [B, L]: padding is -100, and so are ``[DEC]`` and the
        prompt on the rows whose text starts with the prompt."""
        n = self.prompt_length
        prompted = torch.zeros(len(input_ids), dtype=torch.bool, device=input_ids.device)
        if self.prompt_ids and input_ids.shape[1] > n:
            prompt = torch.tensor(self.prompt_ids, device=input_ids.device)
            prompted = (input_ids[:, 1:n] == prompt).all(dim=1)
        return caption_labels(input_ids, self.tokenizer.pad_token_id, n, prompted)

    def lm_loss(
        self, image_embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean label-smoothed cross entropy over the scored tokens (as LAVIS) of the decoder reading
        ``[DEC] text`` (``input_ids`` [B, L] with ``[CLS]`` first, replaced here) and attending to
        ``image_embeds`` [B, N, width]; also returns the number of scored tokens."""
        ids = input_ids.clone()
        ids[:, 0] = self.tokenizer.bos_token_id
        logits = self.text_decoder(
            input_ids=ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds, use_cache=False
        ).logits
        labels = self.lm_labels(ids)[:, 1:]
        losses = smoothed_token_losses(logits[:, :-1, :], labels, self.label_smoothing)
        n_tokens = (labels != -100).sum()
        return losses.sum() / n_tokens.clamp(min=1), n_tokens

    # -- the model contract ----------------------------------------------------------------------
    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """ITC + ITM + LM loss of a batch.

        Args:
            samples: ``"image"`` [B, 3, H, W]; ``"text_input"`` B captions (B >= 2); optional
                ``"image_id"`` [B] (pairs of one image are ITC positives of each other and never
                ITM negatives; without it every pair is its own image, as in LAVIS). ``alpha`` ramps up over the first two epochs of a runner's
                training (``train_progress``).

        Returns:
            ``loss`` = ``loss_itc + loss_itm + loss_lm``; the three and ``n_tokens`` (LM tokens
            scored) are in ``extras``.
        """
        image_id = samples.get("image_id")
        loss_itc, loss_itm, image_embeds, text = self.itc_itm_losses(
            samples, None if image_id is None else torch.as_tensor(image_id)
        )
        loss_lm, n_tokens = self.lm_loss(image_embeds, text.input_ids, text.attention_mask)
        return ModelOutput(
            loss=loss_itc + loss_itm + loss_lm,
            extras={
                "loss_itc": loss_itc.detach(), "loss_itm": loss_itm.detach(), "loss_lm": loss_lm.detach(),
                "n_tokens": n_tokens,
            },
        )
