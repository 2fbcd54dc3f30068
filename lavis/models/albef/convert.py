"""Converting ALBEF checkpoints from LAVIS' layout.

LAVIS' ALBEF models keep the image encoder under ``visual_encoder.*`` with timm's ViT names and the
BERT under ``text_encoder.*`` with BERT's names; our models use the same names (timm's ViT,
transformers' ``BertLayer``), so most tensors are copied as they are. The differences:

* the pre-training checkpoint (``ALBEF.pth``, also the source of the feature extractor) holds the
  BERT of a masked-LM model: ``text_encoder.bert.*`` (and ``text_encoder_m.bert.*``), renamed to
  ``text_encoder.*``, and its LM head ``text_encoder.cls.*``, renamed to ``mlm_head.*`` (momentum
  copies: ``text_encoder_m.cls.*`` to ``mlm_head_m.*``);
* ``position_ids`` buffers that LAVIS saves and our embeddings do not keep are dropped;
* image position embeddings of another grid (224 px pre-training at 384 px) are resized
  bicubically, as LAVIS does when it loads them;
* heads the target model does not have (the masked-LM head, momentum encoders, queues, the ITM
  head of the pre-training model) are left out and logged, when their names are ALBEF heads;
  anything else keeps its name and is reported by the strict loader.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

import torch

from lavis.models.blip.convert import resize_position_embedding

log = logging.getLogger(__name__)

#: what the pre-training model has and a task model may lack (dropped, not reported)
OPTIONAL_HEADS = (
    "mlm_head.", "mlm_head_m.", "text_encoder_m.", "visual_encoder_m.", "vision_proj_m.", "text_proj_m.",
    "itm_head.", "image_queue", "text_queue", "idx_queue", "queue_ptr", "text_decoder_m.", "cls_head_m.",
)
_MLM_PREFIXES = ("text_encoder.bert.", "text_encoder_m.bert.")
_MLM_HEADS = (("text_encoder.cls.", "mlm_head."), ("text_encoder_m.cls.", "mlm_head_m."))


def is_lavis_layout(state_dict: Mapping[str, object]) -> bool:
    """Whether ``state_dict`` is an ALBEF checkpoint as LAVIS saves it (``visual_encoder.*`` and a
    ``position_ids`` buffer or the masked-LM ``text_encoder.bert.*`` names, which ours never has)."""
    return any(k.startswith("visual_encoder.") for k in state_dict) and any(
        k.endswith("position_ids") or k.startswith(_MLM_PREFIXES) for k in state_dict
    )


def lavis_key_to_ours(key: str, our_keys: Collection[str]) -> str:
    """Our name of LAVIS key ``key``: ``text_encoder.bert.X`` becomes ``text_encoder.X`` unless the
    model has the first name itself, ``text_encoder.cls.X`` becomes ``mlm_head.X``."""
    for lavis, ours in _MLM_HEADS:
        if key.startswith(lavis):
            return ours + key[len(lavis):]
    for prefix in _MLM_PREFIXES:
        if key.startswith(prefix) and key not in our_keys:
            return prefix.removesuffix("bert.") + key[len(prefix):]
    return key


def ours_key_to_lavis(key: str, mlm_layout: bool) -> str:
    """The LAVIS name of our key ``key`` in a checkpoint of the masked-LM layout or not."""
    for lavis, ours in _MLM_HEADS:
        if key.startswith(ours):
            return lavis + key[len(ours):]
    if mlm_layout:
        for prefix in _MLM_PREFIXES:
            plain = prefix.removesuffix("bert.")
            if key.startswith(plain) and not key.startswith(prefix):
                return prefix + key[len(plain):]
    return key


def lavis_to_ours(
    state_dict: Mapping[str, torch.Tensor], our_keys: Collection[str], num_image_positions: int
) -> dict[str, torch.Tensor]:
    """A LAVIS ALBEF state dict renamed to our keys (``our_keys``: the target model's state-dict keys).

    Image position embeddings (of ``visual_encoder`` and ``visual_encoder_m``) are resized to
    ``num_image_positions`` (1 + patches). Returns our keys -> the same tensors.
    """
    out: dict[str, torch.Tensor] = {}
    left_out = []
    for key, value in state_dict.items():
        if key.endswith("position_ids"):
            continue
        new_key = lavis_key_to_ours(key, our_keys)
        if new_key not in our_keys and new_key.startswith(OPTIONAL_HEADS):
            left_out.append(key)
            continue
        if new_key.endswith("pos_embed") and new_key.startswith("visual_encoder"):
            value = resize_position_embedding(value, num_image_positions)
        out[new_key] = value
    if left_out:
        heads = sorted({k.split(".")[0] for k in left_out})
        log.info("left out %d keys of ALBEF heads this model does not have: %s", len(left_out), heads)
    return out
