"""The one contract every registered model follows.

A model class declares its variants in ``PRETRAINED_MODEL_CONFIG_DICT`` (``model_type`` -> YAML
path under ``lavis/configs``). Each YAML has a ``model`` block (constructor arguments plus the
reserved keys below) and a ``preprocess`` block (processors for ``load_preprocess``).

Constructor arguments are the single home of defaults: ``from_config`` passes each key of the
``model`` block whose name is a parameter of ``__init__``; any other key that is not reserved is
a configuration error, reported by :func:`lavis.common.config.validate`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lavis.common.errors import CheckpointError, UnknownNameError
from lavis.common.paths import package_path
from lavis.common.registry import init_arg_names
from lavis.zoo.entries import PIN_KEYS

# Keys of a ``model`` config block that are not constructor arguments: names, weight sources and
# their pins (``hf_revision``, ``finetuned_sha256``, ...: see lavis.zoo.entries).
RESERVED_MODEL_KEYS = frozenset(
    {"arch", "model_type", "pretrained", "finetuned", "load_pretrained", "load_finetuned", "hf_repo"} | PIN_KEYS
)


def resolve_weights(url_or_path: str, owner: str) -> str:
    """A local path for a checkpoint: paths pass through; a URL is fetched into the download cache
    (``cache_root()/models/``) or found there, and checked against its pins or manifest record.

    Offline with the file missing, the error names the file and the command that fetches it.
    """
    from lavis.zoo import resolve_location

    return str(resolve_location(url_or_path, owner))


class ConvertedStateDict(dict):
    """A state dict that ``convert_state_dict`` renamed from another layout.

    ``layout`` names that layout (``"LAVIS"``) and ``original_name`` maps one of our keys back to
    its name there, so that key-mismatch errors can name keys as they are in the user's file.
    """

    def __init__(self, data: Mapping[str, torch.Tensor], layout: str, original_name: Callable[[str], str]):
        super().__init__(data)
        self.layout = layout
        self.original_name = original_name


@dataclass
class ModelOutput:
    """What ``forward`` returns: ``loss`` (a scalar tensor) plus named ``extras``.

    The runners log every scalar entry of ``extras`` (a one-element tensor or a number, e.g. token
    counts or an accuracy) next to the loss: averaged over the micro-batches of an optimizer step
    and over ranks, into stdout, ``metrics.jsonl`` and TensorBoard. An entry must keep its name at
    every step and may not reuse a name the runner logs (``loss``, ``lr``, ...). Other entries
    (e.g. logits) are left to the task and not logged.
    """

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
        return init_arg_names(cls)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | DictConfig) -> "BaseModel":
        """Build from a ``model`` config block and load the weights it asks for."""
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        cfg = dict(cfg)
        from lavis.zoo import resolve_config_weights

        # fetched (or found missing, with the command to fetch them) before the network is built
        weights = resolve_config_weights(cfg, cls.__name__)
        names = cls.init_arg_names()
        model = cls(**{k: v for k, v in cfg.items() if k in names})
        if weights is not None:
            model.load_checkpoint(weights)
        return model

    @classmethod
    def from_pretrained(cls, model_type: str, **overrides: Any) -> "BaseModel":
        """Build ``model_type`` from its shipped config, with ``overrides`` merged over the ``model`` block."""
        cfg = cls.default_config(model_type).model
        cfg = OmegaConf.merge(cfg, {"model_type": model_type, **overrides})
        return cls.from_config(cfg)

    # -- weights --------------------------------------------------------------------------------
    def load_checkpoint_from_config(self, cfg: Mapping[str, Any]) -> None:
        """Load ``finetuned`` if ``load_finetuned``, else ``pretrained`` if ``load_pretrained``; the
        Hub copy (``hf_repo``) of those weights is preferred over their URL (see :mod:`lavis.zoo`)."""
        from lavis.zoo import resolve_config_weights

        weights = resolve_config_weights(cfg, type(self).__name__)
        if weights is not None:
            self.load_checkpoint(weights)

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a foreign checkpoint layout onto this model's keys; families override this."""
        return state_dict

    def load_checkpoint(self, url_or_filename: str | os.PathLike, strict: bool = True) -> None:
        """Load weights from a local file (``.safetensors`` or a ``.pth``/``.bin`` state dict) or a
        URL (downloaded into the cache, or found there; see :func:`resolve_weights`).

        Pickles are read with ``weights_only=True``; a state dict stored under ``"model"`` is
        unwrapped and foreign layouts go through :meth:`convert_state_dict`. With ``strict`` (the
        default) missing or unexpected keys raise :class:`CheckpointError` listing both (also by
        their names in the checkpoint's own layout when it was converted).
        """
        from lavis.common.checkpoint import load_state_dict_file

        path = resolve_weights(str(url_or_filename), type(self).__name__)
        state_dict = self.convert_state_dict(load_state_dict_file(path))
        missing, unexpected = self.load_state_dict(state_dict, strict=False)
        if strict and (missing or unexpected):
            msg = (
                f"checkpoint {url_or_filename} does not fit {type(self).__name__}: "
                f"missing keys {sorted(missing)}; unexpected keys {sorted(unexpected)}."
            )
            if isinstance(state_dict, ConvertedStateDict):
                msg += (
                    f" It was converted from the {state_dict.layout} layout, where these keys are named: missing "
                    f"{sorted(state_dict.original_name(k) for k in missing)}; unexpected "
                    f"{sorted(state_dict.original_name(k) for k in unexpected)}. The file is incomplete or is not "
                    f"a {type(self).__name__} checkpoint."
                )
            else:
                msg += " If it is in another layout, convert it first (see the family's converter)."
            raise CheckpointError(msg)

    # -- conveniences ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(self, samples: dict[str, Any]) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(samples)")

