"""CLIP checkpoints in LAVIS's and open_clip's layouts, mapped onto ours.

LAVIS 1.0's ``lavis/models/clip_models`` is a copy of an early open_clip, and its ``CLIP`` has the
same module names and shapes as today's ``open_clip.model.CLIP`` (checked key by key for ViT-B-16
and RN50: 302 and 489 keys, no difference). The open_clip files on the Hub
(``open_clip_pytorch_model.bin`` in the ``timm/*.openai`` repos) are in that layout too. Our
``clip`` model keeps the open_clip network under ``clip.``, so the conversion is:

* a ``module.`` prefix (a model saved from inside DDP) is dropped, as LAVIS's ``load_state_dict`` does;
* every key gets the ``clip.`` prefix;
* the entries OpenAI's checkpoints carry besides weights (``input_resolution``, ``context_length``,
  ``vocab_size``, the text ``attn_mask``, which open_clip rebuilds) are left out.

Any other difference is left for the strict loader to report.
"""

from __future__ import annotations

from typing import Mapping

import torch

PREFIX = "clip."
#: entries of OpenAI / LAVIS checkpoints that are not weights of the open_clip network
NON_WEIGHTS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


def is_open_clip_layout(state_dict: Mapping[str, object]) -> bool:
    """Whether ``state_dict`` is an unprefixed LAVIS / open_clip CLIP state dict."""
    keys = {k[len("module."):] if k.startswith("module.") else k for k in state_dict}
    return "token_embedding.weight" in keys and any(k.startswith("visual.") for k in keys)


def open_clip_to_ours(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LAVIS / open_clip CLIP state dict renamed to our ``clip`` keys (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key in NON_WEIGHTS:
            continue
        out[PREFIX + key] = value
    return out


def ours_to_open_clip(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our ``clip`` state dict in the LAVIS / open_clip layout (for fixtures and exports)."""
    return {k[len(PREFIX):]: v for k, v in state_dict.items() if k.startswith(PREFIX)}


def original_name(key: str) -> str:
    """The LAVIS / open_clip name of our key ``key``."""
    return key[len(PREFIX):] if key.startswith(PREFIX) else key
