"""Which local file holds the weights that are asked for: a zoo entry's, a ``model`` config
block's, or any checkpoint URL's (downloaded through :mod:`lavis.zoo.fetch` when needed).

This is the one place weights are resolved. Its callers: :meth:`lavis.models.base_model.BaseModel.from_config`
and :meth:`~lavis.models.base_model.BaseModel.load_checkpoint` (each resolves once, then loads the
local file), and the ``python -m lavis.zoo`` commands.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from lavis.zoo.entries import (
    WeightSource,
    ZooEntry,
    default_sources,
    download_command,
    entry_for_location,
    get_entry,
    is_url,
)

log = logging.getLogger(__name__)


def url_command(url: str) -> str:
    """``python -m lavis.zoo download-url URL``: the command that fetches any checkpoint URL."""
    return f"python -m lavis.zoo download-url {url}"


def cached_path(entry: ZooEntry) -> tuple[WeightSource, Path] | None:
    """The first source of ``entry`` (preferred first) whose file is on this machine, and that file."""
    from lavis.zoo.fetch import local_file

    for source in entry.sources:
        path = local_file(source)
        if path is not None:
            return source, path
    return None


def weights_path(arch: str, model_type: str, which: str = "auto", *, force: bool = False) -> Path | None:
    """The local weight file of ``arch``/``model_type``, downloaded if needed; ``None`` for random init.

    Args:
        which: ``auto`` (the Hub first, then the URL), ``hf``, ``url`` or ``pretrained``.
        force: download again even if a good copy is cached.
    """
    from lavis.zoo.fetch import fetch

    entry = get_entry(arch, model_type)
    sources = entry.source(which)
    if not sources:
        if entry.random_init:
            return None
        raise ValueError(f"{entry.name} has no {which!r} source; it has: "
                         f"{', '.join(s.describe() for s in entry.sources) or 'none'}")
    return fetch(sources, owner=entry.name, hint=entry.download_command(which), force=force)


def download(
    arch: str, model_type: str, which: str = "auto", *, force: bool = False, assets: bool = True
) -> Path | None:
    """Fetch what ``load_model(arch, model_type)`` needs, so that it later works offline.

    That is the weight file (see :func:`weights_path`) and, with ``assets``, everything the
    constructor downloads (the tokenizer files): the network is built once on the meta device,
    which allocates nothing. A Hub folder source (a vision-language type's ``checkpoint``) holds
    its processor files already.

    Returns:
        The weight file (the repo folder for a folder source), or ``None`` for a random-init type.
    """
    path = weights_path(arch, model_type, which, force=force)
    if assets and not any(s.folder for s in get_entry(arch, model_type).sources):
        from lavis.zoo.report import build_skeleton

        build_skeleton(get_entry(arch, model_type), offline_safe=False)
    return path


def warn_unloaded_finetuned(model_cfg: Mapping[str, Any]) -> bool:
    """Warn (and return True) when a run's ``model`` block names ``finetuned`` weights but does not
    load them (``load_finetuned`` false): no model type's defaults do that, so a config or an
    ``--options`` override forgot the switch. (Internal loads, such as the zoo fetching a type's
    pre-trained weights, turn ``load_finetuned`` off on purpose and do not come through here.)"""
    if model_cfg.get("finetuned") and not model_cfg.get("load_finetuned"):
        log.warning("model.finetuned is set (%s) but model.load_finetuned is false, so those weights are "
                    "not loaded; set model.load_finetuned=true to load them", model_cfg.get("finetuned"))
        return True
    return False


def resolve_config_weights(model_cfg: Mapping[str, Any], owner: str) -> Path | None:
    """The local file of the weights a ``model`` config block loads (downloaded if needed).

    ``None`` when the block asks for no weights (``load_finetuned``/``load_pretrained`` off, or
    nothing to load). The Hub copy (``hf_repo``) is preferred over the original URL; a local path
    given for ``finetuned``/``pretrained`` is used as it is (and must exist).
    """
    from lavis.zoo.fetch import fetch

    sources = default_sources(model_cfg)
    if not sources:
        return None
    arch, model_type = model_cfg.get("arch"), model_cfg.get("model_type")
    who = f"{arch} {model_type}" if arch and model_type else owner
    which = "pretrained" if sources[0].role == "pretrained" and model_cfg.get("finetuned") else "auto"
    return fetch(sources, owner=who, hint=download_command(arch, model_type, which))


def resolve_checkpoint_folder(checkpoint: str | os.PathLike, owner: str) -> str:
    """A local folder for a transformers checkpoint (or processor) given as a path or a Hub repo id.

    A path that exists is returned as it is. The Hub repo of a zoo entry (a published
    vision-language type's ``checkpoint``) is fetched through the zoo: into the Hugging Face cache,
    each weight file recorded and checked, offline-aware, with errors that name
    ``python -m lavis.zoo download ARCH TYPE``. Any other repo id is returned as it is, for
    transformers to download.
    """
    text = str(checkpoint)
    if Path(text).expanduser().exists():
        return text
    hit = entry_for_location(text)
    if hit is None:
        return text
    from lavis.zoo.fetch import fetch

    entry, source = hit
    return str(fetch([source], owner=f"{owner} ({entry.name})", hint=entry.download_command()))


def resolve_location(url_or_path: str | os.PathLike, owner: str, *, force: bool = False) -> Path:
    """A local file for a checkpoint path or URL; a URL is downloaded into ``cache_root()/models/``.

    A path is returned as it is (``~`` expanded). A URL of a zoo entry is checked against that
    entry's pins; any URL against its manifest record. ``force`` downloads a URL again even if a
    good copy is cached.
    """
    from lavis.zoo.fetch import fetch

    text = str(url_or_path)
    if not is_url(text):
        return Path(text).expanduser()
    hit = entry_for_location(text)
    if hit is not None:
        entry, source = hit
        which = "pretrained" if source is entry.pretrained else "auto"
        return fetch([source], owner=entry.name, hint=entry.download_command(which), force=force)
    source = WeightSource(kind="url", location=text, role="checkpoint")
    return fetch([source], owner=owner, hint=url_command(text), force=force)
