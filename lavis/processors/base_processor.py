"""Processors turn one raw item (a PIL image, a caption string, a video path) into model input."""

from __future__ import annotations

import os
from typing import Any, ClassVar, Mapping

from omegaconf import DictConfig

from lavis.common.registry import init_arg_names
from lavis.common.schema import plain_dict


class BaseProcessor:
    """Base of every registered processor: ``__call__(item)`` and ``from_config(cfg)``.

    ``from_config`` passes each key of the config (except ``name``) to ``__init__``; defaults live
    in the ``__init__`` signature only. ``modality`` says what one item is (``image``: a PIL
    image or a path; ``text``: a string; ``video``: a path), so that generic code and the
    registry-wide test can feed it.
    """

    modality: ClassVar[str] = "any"

    def __call__(self, item: Any) -> Any:
        return item

    def read(self, path: str | os.PathLike) -> Any:
        """The image file at ``path`` in the form ``__call__`` takes (data sets read their images
        through this): :func:`read_rgb`; a processor that decodes faster by itself overrides it."""
        return read_rgb(path)

    @classmethod
    def init_arg_names(cls) -> set[str]:
        return init_arg_names(cls)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | DictConfig | None = None) -> "BaseProcessor":
        return cls(**{k: v for k, v in plain_dict(cfg).items() if k != "name"})


def read_rgb(path: str | os.PathLike) -> Any:
    """The image file at ``path`` as an RGB PIL image; raises ``FileNotFoundError``, or PIL's
    error for a file it cannot decode."""
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def build_processor(cfg: Mapping[str, Any] | DictConfig | None) -> BaseProcessor:
    """The processor named by ``cfg.name``, built from the rest of ``cfg``; ``None`` gives identity."""
    from lavis.common.registry import registry

    if cfg is None:
        return BaseProcessor()
    return registry.get_processor_class(cfg["name"]).from_config(cfg)
