"""How a built model runs, for any family: its attention kernels and activation checkpointing.

Two ``model`` config keys that every registered arch accepts (:data:`RUNTIME_MODEL_KEYS`), applied
by :meth:`lavis.models.base_model.BaseModel.from_config` after the network is built and its weights
are loaded. Neither changes the parameters or the state-dict keys, so checkpoints move freely
between settings.

- ``attn_implementation``: ``"sdpa"`` (default) runs attention through
  ``torch.nn.functional.scaled_dot_product_attention``; ``"eager"`` through explicit matmul and
  softmax. Modules that transformers implements only eagerly (BLIP) are switched to the SDPA
  subclasses named in :data:`SDPA_SUBCLASSES` (a family adds its own there); transformers models
  that have SDPA themselves are switched through their ``set_attn_implementation``.
- ``gradient_checkpointing``: recompute each layer's activations in the backward pass instead of
  keeping them (less memory, about one more forward pass of compute). Applied through
  transformers' ``activation_checkpointing_enable`` (non-reentrant) and timm / open_clip's
  ``set_grad_checkpointing``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from torch import nn

from lavis.common.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "RUNTIME_MODEL_KEYS",
    "SDPA_SUBCLASSES",
    "apply_runtime_options",
    "runtime_option_problems",
    "set_attn_implementation",
    "set_gradient_checkpointing",
]

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")

#: model keys every arch accepts, with their defaults (the one home of these defaults)
RUNTIME_MODEL_KEYS: dict[str, Any] = {"attn_implementation": "sdpa", "gradient_checkpointing": False}

#: eager attention class ("module.QualName") -> its SDPA subclass ("module:QualName"); the
#: subclass keeps the parameters and only replaces ``forward``
SDPA_SUBCLASSES: dict[str, str] = {
    "transformers.models.blip.modeling_blip.BlipAttention": "lavis.models.blip.sdpa:SdpaBlipAttention",
    "transformers.models.blip.modeling_blip_text.BlipTextSelfAttention":
        "lavis.models.blip.sdpa:SdpaBlipTextSelfAttention",
}


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type)
    return cls


def _outermost_pretrained(model: nn.Module) -> Iterator["PreTrainedModel"]:
    """The transformers ``PreTrainedModel`` submodules of ``model`` not nested in another one."""
    from transformers import PreTrainedModel

    stack = [model]
    while stack:
        module = stack.pop()
        if isinstance(module, PreTrainedModel):
            yield module
            continue
        stack.extend(module.children())


def set_attn_implementation(model: nn.Module, implementation: str) -> int:
    """Switch every attention module of ``model`` to ``implementation`` (``"sdpa"`` or ``"eager"``),
    in place; returns how many modules or transformers models it set."""
    if implementation not in ATTN_IMPLEMENTATIONS:
        raise ConfigError([f"model.attn_implementation: {implementation!r} is not one of "
                           f"{', '.join(map(repr, ATTN_IMPLEMENTATIONS))}"])
    to_sdpa = {eager: sdpa for eager, sdpa in SDPA_SUBCLASSES.items()}
    from_sdpa = {sdpa.replace(":", "."): eager for eager, sdpa in SDPA_SUBCLASSES.items()}
    changed = 0
    for module in model.modules():
        name = _qualified(type(module))
        if implementation == "sdpa" and name in to_sdpa:
            module.__class__ = _load(to_sdpa[name])
            changed += 1
        elif implementation == "eager" and name in from_sdpa:
            module.__class__ = type(module).__mro__[1]  # the transformers class it subclasses
            changed += 1
    for hf in _outermost_pretrained(model):
        if getattr(hf, "_supports_sdpa", False) and hf.config._attn_implementation != implementation:
            hf.set_attn_implementation(implementation)
            changed += 1
    return changed


def set_gradient_checkpointing(model: nn.Module, enable: bool) -> int:
    """Turn activation checkpointing of ``model``'s transformers, timm and open_clip parts on or off;
    returns how many parts support it (0: ``model`` has none, so ``enable`` changed nothing)."""
    parts = 0
    for hf in _outermost_pretrained(model):
        if getattr(hf, "supports_gradient_checkpointing", False):
            if enable:
                hf.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                hf.activation_checkpointing_disable()
            parts += 1
    for module in model.modules():  # timm and open_clip networks
        setter = getattr(module, "set_grad_checkpointing", None)
        if callable(setter):
            setter(enable)
            parts += 1
    return parts


def runtime_option_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Problems with the values of :data:`RUNTIME_MODEL_KEYS` in a ``model`` block, as ``model.key: what``."""
    problems = []
    impl = cfg.get("attn_implementation", RUNTIME_MODEL_KEYS["attn_implementation"])
    if impl not in ATTN_IMPLEMENTATIONS:
        problems.append(f"model.attn_implementation: {impl!r} is not one of "
                        f"{', '.join(map(repr, ATTN_IMPLEMENTATIONS))}")
    checkpointing = cfg.get("gradient_checkpointing", RUNTIME_MODEL_KEYS["gradient_checkpointing"])
    if not isinstance(checkpointing, bool):
        problems.append(f"model.gradient_checkpointing: expected true or false, got {checkpointing!r}")
    return problems


def apply_runtime_options(
    model: nn.Module, cfg: Mapping[str, Any], arch: str, handled: frozenset[str] | set[str] = frozenset()
) -> None:
    """Apply the :data:`RUNTIME_MODEL_KEYS` of a ``model`` block (defaults where unset) to ``model``,
    except those in ``handled`` (constructor arguments of classes that apply them themselves)."""
    cfg = {k: v for k, v in cfg.items() if k in RUNTIME_MODEL_KEYS and k not in handled}
    problems = runtime_option_problems(cfg)
    if problems:
        raise ConfigError(problems)
    if "attn_implementation" not in handled:
        set_attn_implementation(model, cfg.get("attn_implementation", RUNTIME_MODEL_KEYS["attn_implementation"]))
    if "gradient_checkpointing" not in handled and cfg.get("gradient_checkpointing", False):
        if set_gradient_checkpointing(model, True) == 0:
            raise ConfigError([f"model.gradient_checkpointing: {arch} has no transformers, timm or open_clip part "
                               "that supports it; set it to false"])
