"""Which registered arch serves a transformers checkpoint, from its ``config.json``.

``architectures`` (the class the checkpoint was saved from) is looked up first, then
``model_type``. The table is the only place that knows these names; a family registered under
``lavis/models/vlm/`` adds its row here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lavis.common.errors import ConfigError

#: transformers class name or ``model_type`` -> registered arch
CHECKPOINT_ARCHS: dict[str, str] = {
    "LlavaForConditionalGeneration": "llava",
    "llava": "llava",
    "Qwen2VLForConditionalGeneration": "qwen2_vl",
    "qwen2_vl": "qwen2_vl",
    "Qwen2_5_VLForConditionalGeneration": "qwen2_5_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "LlavaNextForConditionalGeneration": "llava_next",
    "llava_next": "llava_next",
    "LlavaOnevisionForConditionalGeneration": "llava_onevision",
    "llava_onevision": "llava_onevision",
    "Qwen3VLForConditionalGeneration": "qwen3_vl",
    "qwen3_vl": "qwen3_vl",
    "Idefics3ForConditionalGeneration": "idefics3",  # Idefics3 and SmolVLM (v1)
    "idefics3": "idefics3",
    "SmolVLMForConditionalGeneration": "smolvlm",  # SmolVLM2
    "smolvlm": "smolvlm",
    "PaliGemmaForConditionalGeneration": "paligemma",
    "paligemma": "paligemma",
    "InternVLForConditionalGeneration": "internvl",  # InternVL checkpoints in transformers' layout (*-hf)
    "internvl": "internvl",
}


def read_hf_config(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a local checkpoint folder, or of a Hub repo (from the cache when offline)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        file = path / "config.json"
        if not file.is_file():
            raise FileNotFoundError(f"{path} has no config.json; is it a transformers checkpoint folder?")
    else:
        from huggingface_hub import hf_hub_download

        file = Path(hf_hub_download(str(checkpoint), "config.json"))
    return json.loads(file.read_text(encoding="utf-8"))


def arch_for_checkpoint(checkpoint: str | os.PathLike) -> str:
    """The registered arch of a transformers checkpoint; an unsupported one lists the supported ones."""
    config = read_hf_config(checkpoint)
    names = list(config.get("architectures") or []) + [config.get("model_type")]
    for name in names:
        if name in CHECKPOINT_ARCHS:
            return CHECKPOINT_ARCHS[name]
    supported = sorted(k for k in CHECKPOINT_ARCHS if k[:1].isupper())
    raise ConfigError([
        f"{checkpoint}: architectures {config.get('architectures')} / model_type {config.get('model_type')!r} is not "
        f"a supported vision-language model; supported: {', '.join(supported)} (see docs/post_training.md to add one)"
    ])


def load_vlm(checkpoint: str | os.PathLike, processor: str | os.PathLike | None = None, **kwargs: Any) -> Any:
    """The registered model for ``checkpoint`` (picked by :func:`arch_for_checkpoint`) with its
    weights; the processor comes from the same folder or repo unless ``processor`` is given.
    ``kwargs`` are further constructor arguments (``lora``, ``freeze_vision_tower``, ...). The Hub
    repo of a published model type comes through the zoo, as when that type is loaded."""
    from lavis.common.registry import registry
    from lavis.zoo.resolve import resolve_checkpoint_folder

    folder = resolve_checkpoint_folder(checkpoint, "load_vlm")  # a published repo: fetched and checked
    cls = registry.get_model_class(arch_for_checkpoint(folder))
    return cls(processor=str(processor or checkpoint), checkpoint=str(checkpoint), **kwargs)
