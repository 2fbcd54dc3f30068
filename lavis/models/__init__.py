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
from lavis.common.paths import cache_root
from lavis.common.registry import registry

if TYPE_CHECKING:
    from lavis.models.base_model import BaseModel
    from lavis.processors.base_processor import BaseProcessor

__all__ = [
    "load_model",
    "load_preprocess",
    "load_model_and_preprocess",
    "model_zoo",
    "cached_checkpoint",
    "hf_repo_cached",
]

# Weight files looked up in the Hugging Face cache for a model type's ``hf_repo``.
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _model_class(name: str) -> type["BaseModel"]:
    return registry.get_model_class(name)


def _model_type_config(name: str, model_type: str) -> DictConfig:
    """The shipped YAML of ``name``/``model_type``; an unknown type lists the valid ones."""
    cls = _model_class(name)
    if model_type not in cls.PRETRAINED_MODEL_CONFIG_DICT:
        raise UnknownNameError(f"{name} model_type", model_type, cls.model_types())
    return cls.default_config(model_type)


def cached_checkpoint(url_or_path: str | os.PathLike) -> Path | None:
    """The local file for a checkpoint URL or path, if it is on this machine, else ``None``.

    A local path is returned as is when it exists. A URL is looked for by its file name in
    ``cache_root()/models/`` and ``cache_root()/`` (where the model zoo's downloads go).
    """
    text = str(url_or_path)
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https"):
        filename = os.path.basename(parsed.path)
        if not filename:
            return None
        for folder in (cache_root() / "models", cache_root()):
            if (folder / filename).is_file():
                return folder / filename
        return None
    path = Path(text).expanduser()
    return path if path.is_file() else None


def hf_repo_cached(repo_id: str) -> Path | None:
    """The cached weight file of Hub repo ``repo_id`` in the Hugging Face cache, or ``None``."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    for filename in _HF_WEIGHT_FILES:
        try:
            hit = try_to_load_from_cache(repo_id, filename)
        except Exception:  # a malformed repo id in a YAML should not break listing the zoo
            return None
        if isinstance(hit, str):
            return Path(hit)
    return None


def _weights_status(model_cfg: Mapping[str, Any]) -> str:
    """``random init``, ``cached (...)`` or ``not cached`` for one model type's ``model`` block."""
    sources = {k: model_cfg.get(k) for k in ("finetuned", "pretrained") if model_cfg.get(k)}
    hf_repo = model_cfg.get("hf_repo")
    if not sources and not hf_repo:
        return "random init"
    found = [f"{k}: {p}" for k, u in sources.items() if (p := cached_checkpoint(u)) is not None]
    if hf_repo and hf_repo_cached(hf_repo) is not None:
        found.append(f"hf: {hf_repo}")
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
    """Every registered arch, its model types and whether their weights are on this machine.

    ``print(model_zoo)`` shows a table; ``model_zoo.rows()`` gives ``(arch, model_type, weights)``.
    """

    def rows(self) -> list[tuple[str, str, str]]:
        out = []
        for arch in registry.list_models():
            cls = _model_class(arch)
            for model_type in cls.model_types():
                model_cfg = cls.default_config(model_type).get("model", {})
                out.append((arch, model_type, _weights_status(model_cfg)))
        return out

    def __str__(self) -> str:
        header = ("Architecture", "Model type", "Weights")
        rows = [header] + self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        lines = []
        for i, (arch, model_type, weights) in enumerate(rows):
            lines.append(f"{arch:<{widths[0]}}  {model_type:<{widths[1]}}  {weights}")
            if i == 0:
                lines.append("=" * max(len(line) for line in lines))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()

    def __iter__(self):
        return iter(self.rows())


model_zoo = ModelZoo()
