"""Convert BLIP captioning checkpoints between the original LAVIS/BLIP layout and ours.

The published LAVIS and BLIP checkpoints (``blip_coco_caption_base.pth``, ``model_large_caption.pth``,
the pre-training checkpoints ``model_base_capfilt_large.pth`` and ``model_large.pth``) are pickles
``{"model": state_dict, ...}`` of LAVIS' own networks:

* ``visual_encoder.*``: a timm-style ViT (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
  ``blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``);
* ``text_decoder.*``: LAVIS' BERT decoder with cross-attention (``bert.embeddings``,
  ``bert.encoder.layer.N``, ``cls.predictions``), plus the int64 buffer
  ``text_decoder.bert.embeddings.position_ids``; the word embeddings and the output projection
  are one tensor, and so are ``cls.predictions.bias`` and ``cls.predictions.decoder.bias``.

Our ``blip_caption`` wraps transformers' ``BlipForConditionalGeneration`` under ``blip.``: the ViT is
``blip.vision_model.*`` (same fused ``qkv`` projection, in the same q, k, v order, so tensors are
copied as they are) and the decoder ``blip.text_decoder.*`` uses the same names as LAVIS below
its prefix. The conversion is therefore a renaming, plus:

* the ``position_ids`` buffer, which transformers 5 keeps out of its state dict (it is rebuilt);
* the image position embeddings of pre-training checkpoints (224 px, 14x14 patches), resized
  bicubically to the model's grid (384 px: 24x24), as LAVIS does when it loads them;
* the heads of the pre-training model that a captioner does not have (momentum encoders, the
  text encoder, contrastive projections, the ITM head, queues and temperature): they are left
  out on purpose and the names left out are logged.

Anything else keeps a name in our layout and is reported by the strict loader.
"""

from __future__ import annotations

import logging
import re
from typing import Mapping

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

LAVIS_VISION = "visual_encoder."
LAVIS_TEXT = "text_decoder."
OURS_VISION = "blip.vision_model."
OURS_TEXT = "blip.text_decoder."
POSITION_IDS = "text_decoder.bert.embeddings.position_ids"

# Top-level modules of BLIP's pre-training model that the captioner does not have.
PRETRAIN_ONLY = (
    "visual_encoder_m.", "text_encoder.", "text_encoder_m.", "vision_proj.", "vision_proj_m.",
    "text_proj.", "text_proj_m.", "itm_head.", "image_queue", "text_queue", "queue_ptr", "temp",
)

# Vision renaming rules: (name under ``visual_encoder.``, name under ``blip.vision_model.``).
# ``{i}`` is a block number, ``{p}`` a parameter of a Linear / LayerNorm / Conv.
_VISION_RULES = (
    ("cls_token", "embeddings.class_embedding"),
    ("pos_embed", "embeddings.position_embedding"),
    ("patch_embed.proj.{p}", "embeddings.patch_embedding.{p}"),
    ("blocks.{i}.norm1.{p}", "encoder.layers.{i}.layer_norm1.{p}"),
    ("blocks.{i}.attn.qkv.{p}", "encoder.layers.{i}.self_attn.qkv.{p}"),
    ("blocks.{i}.attn.proj.{p}", "encoder.layers.{i}.self_attn.projection.{p}"),
    ("blocks.{i}.norm2.{p}", "encoder.layers.{i}.layer_norm2.{p}"),
    ("blocks.{i}.mlp.fc1.{p}", "encoder.layers.{i}.mlp.fc1.{p}"),
    ("blocks.{i}.mlp.fc2.{p}", "encoder.layers.{i}.mlp.fc2.{p}"),
    ("norm.{p}", "post_layernorm.{p}"),
)
_FIELDS = {"i": r"(?P<i>\d+)", "p": r"(?P<p>weight|bias)"}


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for name, group in _FIELDS.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), group)
    return re.compile(pattern + r"\Z")


_LAVIS_TO_OURS = [(_compile(src), dst) for src, dst in _VISION_RULES]
_OURS_TO_LAVIS = [(_compile(dst), src) for src, dst in _VISION_RULES]


def _rename(name: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, template in rules:
        m = pattern.match(name)
        if m:
            return template.format(**m.groupdict())
    return None


def lavis_key_to_ours(key: str) -> str:
    """Our name for LAVIS state-dict key ``key`` (a name no rule knows keeps its tail under our prefix)."""
    if key.startswith(LAVIS_VISION):
        tail = key[len(LAVIS_VISION):]
        return OURS_VISION + (_rename(tail, _LAVIS_TO_OURS) or tail)
    if key.startswith(LAVIS_TEXT):
        return OURS_TEXT + key[len(LAVIS_TEXT):]
    return key


def ours_key_to_lavis(key: str) -> str:
    """The LAVIS name of our state-dict key ``key`` (inverse of :func:`lavis_key_to_ours`)."""
    if key.startswith(OURS_VISION):
        tail = key[len(OURS_VISION):]
        return LAVIS_VISION + (_rename(tail, _OURS_TO_LAVIS) or tail)
    if key.startswith(OURS_TEXT):
        return LAVIS_TEXT + key[len(OURS_TEXT):]
    return key


def is_lavis_layout(state_dict: Mapping[str, object]) -> bool:
    """Whether ``state_dict`` is an original LAVIS/BLIP checkpoint (it has ``visual_encoder.*`` keys)."""
    return any(k.startswith(LAVIS_VISION) for k in state_dict)


def resize_position_embedding(pos: torch.Tensor, num_positions: int) -> torch.Tensor:
    """Image position embeddings [1, 1 + g*g, D] resized to [1, num_positions, D].

    The class-token position is kept; the g x g grid of patch positions is resized bicubically to
    the new square grid (what LAVIS does when a 224 px checkpoint is loaded at 384 px).
    """
    if pos.shape[1] == num_positions:
        return pos
    old_grid, new_grid = int(round((pos.shape[1] - 1) ** 0.5)), int(round((num_positions - 1) ** 0.5))
    if old_grid * old_grid != pos.shape[1] - 1 or new_grid * new_grid != num_positions - 1:
        raise ValueError(
            f"cannot resize image position embeddings of {pos.shape[1]} positions to {num_positions}: "
            "both must be one class position plus a square grid"
        )
    cls_pos, grid = pos[:, :1], pos[:, 1:]
    dim = grid.shape[-1]
    grid = grid.reshape(1, old_grid, old_grid, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, dim).to(pos.dtype)
    log.info("resized image position embeddings from a %dx%d to a %dx%d grid", old_grid, old_grid, new_grid, new_grid)
    return torch.cat([cls_pos, grid], dim=1)


def lavis_to_ours(
    state_dict: Mapping[str, torch.Tensor], num_image_positions: int | None = None
) -> dict[str, torch.Tensor]:
    """A LAVIS/BLIP captioning (or pre-training) state dict renamed to our ``blip_caption`` keys.

    Args:
        state_dict: the checkpoint's state dict (the value under ``"model"``).
        num_image_positions: the model's image positions (1 + patches); position embeddings of
            another grid are resized to it. ``None`` keeps them as they are.

    Returns:
        Our keys -> the same tensors (tied tensors stay shared). ``position_ids`` comes back as
        ``blip.text_decoder.bert.embeddings.position_ids``; the model drops it if it does not keep
        that buffer. Pre-training-only heads are left out (and logged).
    """
    out: dict[str, torch.Tensor] = {}
    skipped = []
    for key, value in state_dict.items():
        if key.startswith(PRETRAIN_ONLY):
            skipped.append(key)
            continue
        new_key = lavis_key_to_ours(key)
        if new_key == OURS_VISION + "embeddings.position_embedding" and num_image_positions is not None:
            value = resize_position_embedding(value, num_image_positions)
        out[new_key] = value
    if skipped:
        heads = sorted({k.split(".")[0] for k in skipped})
        log.info("left out %d keys of BLIP pre-training heads a captioner does not use: %s", len(skipped), heads)
    return out


def ours_to_lavis(state_dict: Mapping[str, torch.Tensor], *, position_ids: bool = True) -> dict[str, torch.Tensor]:
    """Our ``blip_caption`` state dict in the original LAVIS layout (for fixtures and exports).

    Args:
        state_dict: ``BlipCaption.state_dict()`` (keys under ``blip.``).
        position_ids: add the int64 buffer ``text_decoder.bert.embeddings.position_ids`` [1, P]
            that LAVIS checkpoints carry.

    Returns:
        LAVIS keys -> tensors. Tied tensors stay one tensor: the word embeddings and
        ``cls.predictions.decoder.weight``, ``cls.predictions.bias`` and ``cls.predictions.decoder.bias``.
    """
    out = {ours_key_to_lavis(k): v for k, v in state_dict.items()}
    ties = (
        ("text_decoder.cls.predictions.decoder.weight", "text_decoder.bert.embeddings.word_embeddings.weight"),
        ("text_decoder.cls.predictions.decoder.bias", "text_decoder.cls.predictions.bias"),
    )
    for alias, source in ties:
        if source in out:
            out[alias] = out[source]
    if position_ids:
        n = out["text_decoder.bert.embeddings.position_embeddings.weight"].shape[0]
        out[POSITION_IDS] = torch.arange(n, dtype=torch.long).unsqueeze(0)
    return out


# -- image-text archs (blip_image_text_matching, blip_feature_extractor, blip_retrieval, ...) ------
# Their modules sit at the top level, named as in transformers' BLIP models (``vision_model``,
# ``text_encoder``, ``vision_proj``, ``text_proj``, ``itm_head``, so that Hub checkpoints load as
# they are); of LAVIS' names only the ViTs are renamed (with the rules above). The momentum copies
# keep LAVIS' ``_m`` suffix; queues, ``temp`` and the text modules keep their LAVIS names.
# ``blip_pretrain`` has all of LAVIS' BlipPretrain modules, so a pre-training checkpoint loads into it
# whole: its ``text_encoder.*`` and ``text_decoder.bert.*`` entries of the tied (shared) tensors are
# both present, as in LAVIS' state dict, and load into the one tensor. Only ``idx_queue`` is ours
# (``blip_retrieval.convert_state_dict`` adds an empty one); tests/assets/blip_pretrain_lavis_keys.txt
# lists LAVIS' names, checked against ours in tests/unit/models/test_blip_pretrain.py.
_VISION_PAIRS = (("visual_encoder.", "vision_model."), ("visual_encoder_m.", "vision_model_m."))
#: top-level modules, parameters and buffers of LAVIS' BLIP models (our names)
LAVIS_TOP_LEVEL = frozenset({
    "vision_model", "vision_model_m", "text_encoder", "text_encoder_m", "text_decoder", "vision_proj",
    "vision_proj_m", "text_proj", "text_proj_m", "itm_head", "cls_head", "image_queue", "text_queue",
    "idx_queue", "queue_ptr", "temp",
})


def image_text_key_from_lavis(key: str) -> str:
    """Our name, in the image-text archs, of LAVIS state-dict key ``key``."""
    for src, dst in _VISION_PAIRS:
        if key.startswith(src):
            tail = key[len(src):]
            return dst + (_rename(tail, _LAVIS_TO_OURS) or tail)
    return key


def image_text_key_to_lavis(key: str) -> str:
    """The LAVIS name of our image-text arch key ``key`` (inverse of :func:`image_text_key_from_lavis`)."""
    for src, dst in _VISION_PAIRS:
        if key.startswith(dst):
            tail = key[len(dst):]
            return src + (_rename(tail, _OURS_TO_LAVIS) or tail)
    return key


def lavis_to_image_text(
    state_dict: Mapping[str, torch.Tensor], own_top_level: set[str], num_image_positions: int | None = None
) -> dict[str, torch.Tensor]:
    """A LAVIS BLIP state dict (retrieval, ITM, feature extractor, VQA, NLVR, pre-training) renamed
    to our image-text archs' keys.

    Args:
        state_dict: the checkpoint's state dict (the value under ``"model"``).
        own_top_level: the top-level names of the model that loads it. LAVIS modules the model does
            not have (a pre-training checkpoint's decoder and momentum encoders, say) are left out
            and logged; names LAVIS' models do not have are kept, for the strict loader to report.
        num_image_positions: the model's image positions (1 + patches); position embeddings of
            another grid are resized to it.
    """
    out: dict[str, torch.Tensor] = {}
    skipped = set()
    for key, value in state_dict.items():
        new_key = image_text_key_from_lavis(key)
        top = new_key.split(".")[0]
        if top in LAVIS_TOP_LEVEL and top not in own_top_level:
            skipped.add(top)
            continue
        if new_key.endswith("embeddings.position_embedding") and num_image_positions is not None:
            value = resize_position_embedding(value, num_image_positions)
        out[new_key] = value
    if skipped:
        log.info("left out LAVIS modules this model does not have: %s", sorted(skipped))
    return out


def image_text_to_lavis(state_dict: Mapping[str, torch.Tensor], *, position_ids: bool = True) -> dict[str, torch.Tensor]:
    """Our image-text arch state dict in LAVIS' layout (for fixtures and exports); with
    ``position_ids`` the int64 ``embeddings.position_ids`` buffer LAVIS' text modules carry is added."""
    out = {image_text_key_to_lavis(k): v for k, v in state_dict.items()}
    if position_ids:
        for key in list(out):
            if key.endswith("embeddings.position_embeddings.weight"):
                n = out[key].shape[0]
                out[key.replace("position_embeddings.weight", "position_ids")] = torch.arange(n).unsqueeze(0)
    return out
