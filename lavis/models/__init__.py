"""Load registered models and their processors by name; list the model zoo.

>>> from lavis.models import load_model_and_preprocess, model_zoo
>>> model, vis_processors, txt_processors = load_model_and_preprocess("blip_caption", "tiny", is_eval=True)
>>> print(model_zoo)

Importing this package is light: model families (and transformers) are imported the first time a
model is looked up in the registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from lavis.common.errors import UnknownNameError
from lavis.common.registry import registry

if TYPE_CHECKING:
    from lavis.models.base_model import BaseModel
    from lavis.processors.base_processor import BaseProcessor
    from lavis.zoo import ZooEntry

__all__ = [
    "load_model",
    "load_preprocess",
    "load_model_and_preprocess",
    "model_zoo",
    "cached_checkpoint",
    "hf_repo_cached",
]


def _model_class(name: str) -> type["BaseModel"]:
    return registry.get_model_class(name)


def _model_type_config(name: str, model_type: str) -> DictConfig:
    """The shipped YAML of ``name``/``model_type``; an unknown type lists the valid ones."""
    cls = _model_class(name)
    if model_type not in cls.PRETRAINED_MODEL_CONFIG_DICT:
        raise UnknownNameError(f"{name} model_type", model_type, cls.model_types())
    return cls.default_config(model_type)


def cached_checkpoint(url_or_path: str | os.PathLike) -> Path | None:
    """The local file for a checkpoint URL or path, if it is on this machine, else ``None`` (no network).

    A local path is returned as is when it exists. A URL is looked for where the model zoo
    downloads it: ``cache_root()/models/<file name>``.
    """
    from lavis.zoo.fetch import url_cache_path

    text = str(url_or_path)
    if urlparse(text).scheme in ("http", "https"):
        try:
            path = url_cache_path(text)
        except ValueError:
            return None
        return path if path.is_file() else None
    path = Path(text).expanduser()
    return path if path.is_file() else None


def hf_repo_cached(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached weight file (``model.safetensors``, else ``pytorch_model.bin``) of Hub repo
    ``repo_id`` at ``revision`` (default ``main``) in the Hugging Face cache, or ``None``."""
    from lavis.zoo.entries import HF_WEIGHT_FILES
    from lavis.zoo.fetch import hf_cached_file

    return hf_cached_file(repo_id, HF_WEIGHT_FILES, revision)


def _source_label(entry: "ZooEntry") -> str:
    """The preferred source of an entry (``+N`` when it has fallbacks), or ``-`` for random init."""
    if entry.random_init:
        return "-"
    more = len(entry.sources) - 1
    return entry.sources[0].describe() + (f" (+{more} fallback)" if more else "")


def _weights_status(entry: "ZooEntry") -> str:
    """``random init``, ``cached (...)`` or ``not cached`` for one zoo entry (no network)."""
    from lavis.zoo.fetch import local_file

    if entry.random_init:
        return "random init"
    found = []
    for source in list(entry.sources) + ([entry.pretrained] if entry.pretrained else []):
        path = local_file(source)
        if path is not None:
            found.append(f"hf: {source.location}" if source.kind == "hf" else f"{source.role}: {path}")
    return f"cached ({'; '.join(found)})" if found else "not cached"


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
    model = _model_class(name).from_config(OmegaConf.merge(cfg, overrides))
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

    if config is None:
        config = {}
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)

    def build(block: Mapping[str, Any] | None) -> dict[str, "BaseProcessor"]:
        block = block or {}
        return {split: build_processor(block.get(split)) for split in ("train", "eval")}

    return build(config.get("vis_processor")), build(config.get("text_processor"))


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


class ModelZoo:
    """Every registered arch, its model types, where their weights come from and whether they are
    on this machine (see :mod:`lavis.zoo`; ``python -m lavis.zoo list`` prints the same).

    ``print(model_zoo)`` shows a table; ``model_zoo.rows()`` gives ``(arch, model_type, weights)``
    and ``model_zoo.entries()`` the :class:`lavis.zoo.ZooEntry` objects.
    """

    def entries(self) -> list["ZooEntry"]:
        from lavis.zoo import entries

        return entries()

    def rows(self) -> list[tuple[str, str, str]]:
        return [(e.arch, e.model_type, _weights_status(e)) for e in self.entries()]

    def __str__(self) -> str:
        header = ("Architecture", "Model type", "Source", "Weights")
        rows = [header] + [(e.arch, e.model_type, _source_label(e), _weights_status(e)) for e in self.entries()]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = []
        for i, row in enumerate(rows):
            lines.append("  ".join(f"{c:<{w}}" for c, w in zip(row[:3], widths)) + f"  {row[3]}")
            if i == 0:
                lines.append("=" * max(len(line) for line in lines))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()

    def __iter__(self):
        return iter(self.rows())


model_zoo = ModelZoo()
