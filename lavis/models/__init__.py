"""Load registered models and their processors by name; list the model zoo.

>>> from lavis.models import load_model_and_preprocess, model_zoo
>>> model, vis_processors, txt_processors = load_model_and_preprocess("blip_caption", "tiny", is_eval=True)
>>> print(model_zoo)

Importing this package is light: model families (and transformers) are imported the first time a
model is looked up in the registry.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping

from omegaconf import DictConfig

from lavis.common.errors import UnknownNameError
from lavis.common.registry import registry
from lavis.common.schema import merge_dict_configs, plain_dict
from lavis.zoo.model_zoo import model_zoo  # re-exported: the zoo lives in lavis.zoo

if TYPE_CHECKING:
    from lavis.models.base_model import BaseModel
    from lavis.processors.base_processor import BaseProcessor

__all__ = [
    "load_model",
    "load_preprocess",
    "load_model_and_preprocess",
    "model_zoo",
]


def _model_class(name: str) -> type["BaseModel"]:
    return registry.get_model_class(name)


def _model_type_config(name: str, model_type: str) -> DictConfig:
    """The shipped YAML of ``name``/``model_type``; an unknown type lists the valid ones."""
    cls = _model_class(name)
    if model_type not in cls.PRETRAINED_MODEL_CONFIG_DICT:
        raise UnknownNameError(f"{name} model_type", model_type, cls.model_types())
    return cls.default_config(model_type)


def load_model(
    name: str,
    model_type: str,
    is_eval: bool = False,
    device: str | Any = "cpu",
    checkpoint: str | os.PathLike | None = None,
) -> "BaseModel":
    """Build registered model ``name`` as ``model_type`` with the weights its config names.

    Args:
        name: a registered arch (``registry.list_models()``), e.g. ``"blip_caption"``.
        model_type: one of the arch's types (``model_zoo`` lists them), e.g. ``"tiny"``.
        is_eval: put the model in eval mode.
        device: where to put it (``"cpu"``, ``"cuda"``, a ``torch.device``).
        checkpoint: a local weight file loaded (strictly) instead of the config's
            ``pretrained``/``finetuned`` weights.
    """
    cfg = _model_type_config(name, model_type).model
    overrides: dict[str, Any] = {"model_type": model_type}
    if checkpoint is not None:
        overrides.update(load_pretrained=False, load_finetuned=False)
    model = _model_class(name).from_config(merge_dict_configs(cfg, overrides))
    if checkpoint is not None:
        model.load_checkpoint(checkpoint)
    if is_eval:
        model.eval()
    return model.to(device)


def load_preprocess(
    config: Mapping[str, Any] | DictConfig | None,
) -> tuple[dict[str, "BaseProcessor"], dict[str, "BaseProcessor"]]:
    """Processors from a ``preprocess`` block: ``(vis_processors, txt_processors)``.

    Each is ``{"train": processor, "eval": processor}``, built with
    :func:`lavis.processors.build_processor`; a missing entry is the identity processor.
    """
    from lavis.processors import build_processor

    plain = plain_dict(config)  # None: no processors given

    def build(block: Mapping[str, Any] | None) -> dict[str, "BaseProcessor"]:
        block = block or {}
        return {split: build_processor(block.get(split)) for split in ("train", "eval")}

    return build(plain.get("vis_processor")), build(plain.get("text_processor"))


def load_model_and_preprocess(
    name: str, model_type: str, is_eval: bool = False, device: str | Any = "cpu"
) -> tuple["BaseModel", dict[str, "BaseProcessor"], dict[str, "BaseProcessor"]]:
    """``load_model`` plus the processors of the model type's ``preprocess`` block.

    Returns:
        ``(model, vis_processors, txt_processors)``; the processor dicts have ``"train"`` and ``"eval"``.
    """
    cfg = _model_type_config(name, model_type)
    vis_processors, txt_processors = load_preprocess(cfg.get("preprocess"))
    model = load_model(name, model_type, is_eval=is_eval, device=device)
    return model, vis_processors, txt_processors
