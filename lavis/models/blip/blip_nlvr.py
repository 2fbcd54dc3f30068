"""BLIP for NLVR2 (``blip_nlvr``): is a sentence true of a pair of images?

The text encoder reads ``[ENC] sentence`` and attends to both images in every layer. transformers
has no such layer, so each layer's cross-attention of a ``BlipTextModel`` is replaced by
:class:`TwoImageCrossAttention`: two transformers ``BlipTextSelfAttention`` blocks (``self0`` on
image 0, ``self1`` on image 1), each followed by its own output projection (``dense0``,
``dense1``), merged by their mean in the first layers and by a linear layer on their
concatenation (``merge_layer``) from layer ``merge_from_layer`` on (LAVIS: 6), then the residual and
LayerNorm. A two-layer MLP (``cls_head``) on the ``[ENC]`` state gives the class logits. Names and
shapes are those of LAVIS' NLVR encoder, so its checkpoints only need the ViT renamed.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.models.base_model import ModelOutput
from lavis.models.blip.image_text import BlipEncoders


class TwoImageCrossAttention(nn.Module):
    """Cross-attention of text states to two images, merged into one update.

    ``encoder_hidden_states`` is both images' states concatenated along the sequence, image 0's
    ``num_image_tokens`` first. Image tokens are never padded, so no mask is applied to them (as
    transformers' BLIP cross-attention ignores it too).
    """

    def __init__(self, config: Any, layer_idx: int, num_image_tokens: int, merge: bool):
        super().__init__()
        from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

        self.num_image_tokens = num_image_tokens
        self.self0 = BlipTextSelfAttention(config, is_cross_attention=True, layer_idx=layer_idx)
        self.self1 = BlipTextSelfAttention(config, is_cross_attention=True, layer_idx=layer_idx)
        self.output = TwinOutput(int(config.hidden_size), float(config.layer_norm_eps), float(config.hidden_dropout_prob), merge)

    def forward(
        self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, **_: Any
    ) -> tuple[torch.Tensor, None]:
        """``hidden_states`` [B, L, H], ``encoder_hidden_states`` [B, 2N, W] -> ([B, L, H], None)."""
        n = self.num_image_tokens
        if encoder_hidden_states.shape[1] != 2 * n:
            raise ValueError(f"expected the states of two images of {n} tokens each, got {encoder_hidden_states.shape[1]} tokens")
        out0, _ = self.self0(hidden_states, encoder_hidden_states=encoder_hidden_states[:, :n])
        out1, _ = self.self1(hidden_states, encoder_hidden_states=encoder_hidden_states[:, n:])
        return self.output(out0, out1, hidden_states), None


class TwinOutput(nn.Module):
    """``LayerNorm(merge(dense0(a), dense1(b)) + residual)``; merge is the mean, or ``merge_layer`` on
    the concatenation."""

    def __init__(self, hidden: int, eps: float, dropout: float, merge: bool):
        super().__init__()
        self.dense0 = nn.Linear(hidden, hidden)
        self.dense1 = nn.Linear(hidden, hidden)
        self.merge_layer = nn.Linear(2 * hidden, hidden) if merge else None
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, a: torch.Tensor, b: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        a, b = self.dense0(a), self.dense1(b)
        merged = (a + b) / 2 if self.merge_layer is None else self.merge_layer(torch.cat([a, b], dim=-1))
        return self.LayerNorm(self.dropout(merged) + residual)


@registry.register_model("blip_nlvr")
class BlipNLVR(BlipEncoders):
    """BLIP NLVR2 classifier (LAVIS ``blip_nlvr``: type ``nlvr``).

    Args (besides :class:`~lavis.models.blip.image_text.BlipEncoders`'):
        num_classes: outputs of ``cls_head`` (NLVR2: 2, false / true).
        merge_from_layer: the first text layer that merges the two images with ``merge_layer``
            (earlier ones average them); LAVIS: 6.
    """

    TASK_METHODS = ("predict_class",)

    def __init__(
        self,
        vision_config: Mapping[str, Any],
        text_config: Mapping[str, Any],
        tokenizer: str = "bert-base-uncased",
        max_txt_len: int = 35,
        num_classes: int = 2,
        merge_from_layer: int = 6,
    ):
        super().__init__(vision_config, text_config, tokenizer, max_txt_len)
        if num_classes < 2:
            raise ConfigError([f"model.num_classes: {num_classes}; a classifier needs at least 2"])
        embeddings = self.vision_model.embeddings
        tokens = int(embeddings.num_positions)
        config = self.text_encoder.config
        for i, layer in enumerate(self.text_encoder.encoder.layer):
            layer.crossattention = TwoImageCrossAttention(config, i, tokens, merge=i >= merge_from_layer)
        hidden = int(config.hidden_size)
        self.cls_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def logits(self, samples: Mapping[str, Any]) -> torch.Tensor:
        """Class logits [B, num_classes] of ``samples["image0"]``, ``samples["image1"]`` [B, 3, H, W] and
        ``samples["text_input"]`` (B sentences)."""
        missing = [k for k in ("image0", "image1", "text_input") if k not in samples]
        if missing:
            raise ValueError(f"blip_nlvr needs samples {missing}: the two images and the sentence of each pair")
        image0, image1 = samples["image0"], samples["image1"]
        states = self.encode_image(torch.cat([image0, image1], dim=0))
        both = torch.cat(states.split(image0.shape[0]), dim=1)  # [B, 2N, W]: image 0's tokens, then image 1's
        text = self.tokenize(samples["text_input"])
        return self.cls_head(self.encode_multimodal(text.input_ids, text.attention_mask, both)[:, 0, :])

    def forward(self, samples: dict[str, Any]) -> ModelOutput:
        """Cross entropy of the logits against ``samples["label"]`` [B] (NLVR2: 1 = the sentence is true)."""
        if "label" not in samples:
            raise ValueError("blip_nlvr's forward needs samples['label'] [B], the class of each pair")
        logits = self.logits(samples)
        label = torch.as_tensor(samples["label"]).long().to(logits.device)
        return ModelOutput(loss=F.cross_entropy(logits, label), extras={"logits": logits.detach()})

    @torch.no_grad()
    def predict_class(self, samples: dict[str, Any], class_names: list[str] | None = None) -> torch.Tensor:
        """Logits [B, num_classes]; a trained head, so ``class_names`` is ignored."""
        return self.logits(samples)
