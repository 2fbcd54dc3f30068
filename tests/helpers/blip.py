"""The tiny BLIP captioner and a two-image batch that the attention and runtime tests share."""

from __future__ import annotations

import torch

from lavis.models.blip.blip_caption import BlipCaption

CAPTIONS = ["a picture of a red circle", "a picture of two small blue squares above a green star"]


def tiny_caption(**overrides) -> BlipCaption:
    """The ``tiny`` type, seeded (``overrides`` go over its config)."""
    torch.manual_seed(0)
    model = BlipCaption.from_pretrained("tiny", **overrides)
    assert isinstance(model, BlipCaption)
    return model


def caption_batch() -> dict:
    """Two 64-px random images with :data:`CAPTIONS`."""
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    return {"image": image, "text_input": list(CAPTIONS)}
