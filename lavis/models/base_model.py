"""The one contract every registered model follows.

A model class declares its variants in ``PRETRAINED_MODEL_CONFIG_DICT`` (``model_type`` -> YAML
path under ``lavis/configs``). Each YAML has a ``model`` block (constructor arguments plus the
reserved keys below) and a ``preprocess`` block (processors for ``load_preprocess``).

Constructor arguments are the single home of defaults: ``from_config`` passes each key of the
``model`` block whose name is a parameter of ``__init__``; any other key that is not reserved is
a configuration error, reported by :func:`lavis.common.config.validate`.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lavis.common.errors import CheckpointError, UnknownNameError
from lavis.common.paths import package_path

# Keys of a ``model`` config block that are not constructor arguments.
RESERVED_MODEL_KEYS = frozenset(
    {"arch", "model_type", "pretrained", "finetuned", "load_pretrained", "load_finetuned", "hf_repo"}
)


def resolve_weights(url_or_path: str, owner: str) -> str:
    """A local path for a checkpoint: paths pass through, a URL must already be in the download cache."""
    if not url_or_path.startswith(("http://", "https://")):
        return url_or_path
    from lavis.models import cached_checkpoint

    local = cached_checkpoint(url_or_path)
    if local is None:
        raise CheckpointError(
            f"{owner}: the weights {url_or_path} are not in the local cache, and downloads of published "
            "weights land with the model-zoo work. Pass a local file instead (load_model(..., "
            "checkpoint=PATH) or model.load_checkpoint(PATH)), or build with load_finetuned=False and "
            "load_pretrained=False for random weights."
        )
    return str(local)


@dataclass
class ModelOutput:
    """What ``forward`` returns: ``loss`` (a scalar) plus named extra tensors for logging."""

    loss: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


class BaseModel(nn.Module):
    """Base of every registered model."""

    PRETRAINED_MODEL_CONFIG_DICT: ClassVar[dict[str, str]] = {}

    # -- configuration --------------------------------------------------------------------------
    @classmethod
    def model_types(cls) -> list[str]:
        return sorted(cls.PRETRAINED_MODEL_CONFIG_DICT)

    @classmethod
    def default_config_path(cls, model_type: str) -> str:
        """Absolute path of the shipped YAML for ``model_type``."""
        if model_type not in cls.PRETRAINED_MODEL_CONFIG_DICT:
            raise UnknownNameError(f"{cls.__name__} model_type", model_type, cls.model_types())
        return str(package_path(cls.PRETRAINED_MODEL_CONFIG_DICT[model_type]))

    @classmethod
    def default_config(cls, model_type: str) -> DictConfig:
        """The shipped YAML of ``model_type`` (``model`` and ``preprocess`` blocks)."""
        return OmegaConf.load(cls.default_config_path(model_type))

    @classmethod
    def init_arg_names(cls) -> set[str]:
        """Names a ``model`` config block may set besides the reserved keys."""
        params = inspect.signature(cls.__init__).parameters
        return {n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | DictConfig) -> "BaseModel":
        """Build from a ``model`` config block and load the weights it asks for."""
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        cfg = dict(cfg)
        for flag, key in (("load_finetuned", "finetuned"), ("load_pretrained", "pretrained")):
            if cfg.get(flag) and cfg.get(key):  # unreachable weights fail before the network is built
                resolve_weights(str(cfg[key]), cls.__name__)
                break
        names = cls.init_arg_names()
        model = cls(**{k: v for k, v in cfg.items() if k in names})
        model.load_checkpoint_from_config(cfg)
        return model

    @classmethod
    def from_pretrained(cls, model_type: str, **overrides: Any) -> "BaseModel":
        """Build ``model_type`` from its shipped config, with ``overrides`` merged over the ``model`` block."""
        cfg = cls.default_config(model_type).model
        cfg = OmegaConf.merge(cfg, {"model_type": model_type, **overrides})
        return cls.from_config(cfg)

    # -- weights --------------------------------------------------------------------------------
    def load_checkpoint_from_config(self, cfg: Mapping[str, Any]) -> None:
        """Load ``finetuned`` if ``load_finetuned``, else ``pretrained`` if ``load_pretrained``."""
        if cfg.get("load_finetuned") and cfg.get("finetuned"):
            self.load_checkpoint(cfg["finetuned"])
        elif cfg.get("load_pretrained") and cfg.get("pretrained"):
            self.load_checkpoint(cfg["pretrained"])

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a foreign checkpoint layout onto this model's keys; families override this."""
        return state_dict

    def load_checkpoint(self, url_or_filename: str | os.PathLike, strict: bool = True) -> None:
        """Load weights from a local file (``.safetensors`` or a ``.pth``/``.bin`` state dict), or
        from a URL whose file is already in the download cache.

        Pickles are read with ``weights_only=True``; a state dict stored under ``"model"`` is
        unwrapped. With ``strict`` (the default) missing or unexpected keys raise
        :class:`CheckpointError` listing both.
        """
        from lavis.common.checkpoint import load_state_dict_file

        path = resolve_weights(str(url_or_filename), type(self).__name__)
        state_dict = self.convert_state_dict(load_state_dict_file(path))
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        if strict and (missing or unexpected):
            raise CheckpointError(
                f"checkpoint {url_or_filename} does not fit {type(self).__name__}: "
                f"missing keys {sorted(missing)}; unexpected keys {sorted(unexpected)}. "
                "If it is in another layout, convert it first (see the family's converter)."
            )

    # -- conveniences ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(self, samples: dict[str, Any]) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(samples)")

