"""Zoo entries: where the weights of every registered model type come from.

An entry is derived from a model type's shipped YAML, nothing is written twice. Its ``model``
block names the sources:

``hf_repo``
    a Hugging Face Hub repo with the weights in transformers' layout. It stands for the weights
    the type loads by default (``finetuned`` when ``load_finetuned``, else ``pretrained``) and is
    preferred over their URL. Pins: ``hf_revision`` (a commit), ``hf_filename``, ``hf_sha256``,
    ``hf_size``.
``finetuned`` / ``pretrained``
    the original checkpoint URL (or a local path). Pins: ``finetuned_sha256``,
    ``finetuned_size``, ``pretrained_sha256``, ``pretrained_size``.
``checkpoint``
    (vision-language types) a Hub repo in transformers' layout that the model's constructor loads
    with ``from_pretrained``: the whole repo folder (config, processor files and the weights,
    sharded or not) is the source. Pin: ``hf_revision``.

Pins are written only where really known (published, or computed from the real file:
``python -m lavis.zoo verify --print``). Without them the first download is recorded in the
cache's manifest and later uses are checked against that record.

The optional top-level ``zoo`` block of the YAML holds what only the zoo needs: ``task`` (for
the table), ``skeleton_overrides``, constructor arguments that let the zoo build the network
on the meta device without downloads to count its parameters (they must not change the count),
and ``published_parameters``, the count the weights' publisher gives (a test checks the skeleton
against it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlparse

from omegaconf import DictConfig

from lavis.common.errors import UnknownNameError
from lavis.common.schema import load_dict_config, plain_dict

HUB_WEB = "https://huggingface.co"
"""The Hub's web address (repo pages)."""

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
"""Weight files looked for in a Hub repo, preferred first."""

PIN_KEYS = frozenset(
    {
        "hf_revision", "hf_filename", "hf_sha256", "hf_size",
        "finetuned_sha256", "finetuned_size", "pretrained_sha256", "pretrained_size",
    }
)
"""``model`` block keys that pin a source (see the module docstring)."""

SourceKind = Literal["hf", "url", "file"]


def is_url(text: str) -> bool:
    """Whether ``text`` is an http(s) URL (not a local path)."""
    return urlparse(str(text)).scheme in ("http", "https")


@dataclass(frozen=True)
class WeightSource:
    """One place a model type's weights can come from.

    Attributes:
        kind: ``"hf"`` (a Hub repo), ``"url"`` (an original checkpoint URL) or ``"file"`` (a local path).
        location: the repo id, URL or path.
        role: ``"finetuned"`` or ``"pretrained"``: which weights of the type these are.
        revision: Hub only, the pinned commit (``None``: the repo's ``main``).
        filenames: Hub only, the weight files to look for, preferred first.
        sha256, size: pinned hash and byte size of the weight file, where known.
        folder: Hub only, the source is the whole repo in transformers' layout (a ``checkpoint``
            folder for ``from_pretrained``), not one weight file.
    """

    kind: SourceKind
    location: str
    role: str
    revision: str | None = None
    filenames: tuple[str, ...] = HF_WEIGHT_FILES
    sha256: str | None = None
    size: int | None = None
    folder: bool = False

    @property
    def pin_prefix(self) -> str:
        """Prefix of this source's pin keys in the ``model`` block (``hf`` or the role)."""
        return "hf" if self.kind == "hf" else self.role

    def describe(self) -> str:
        """``hf:REPO`` (``@REVISION`` when pinned), the URL, or the path."""
        if self.kind == "hf":
            rev = f"@{self.revision}" if self.revision else ""
            return f"hf:{self.location}{rev}" + (" (repo folder)" if self.folder else "")
        return self.location


def _int_or_none(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def role_source(model_cfg: Mapping[str, Any], role: str) -> WeightSource | None:
    """The URL or local-path source of ``role`` (``finetuned``/``pretrained``), with its pins."""
    location = model_cfg.get(role)
    if not location:
        return None
    return WeightSource(
        kind="url" if is_url(str(location)) else "file",
        location=str(location),
        role=role,
        sha256=_str_or_none(model_cfg.get(f"{role}_sha256")),
        size=_int_or_none(model_cfg.get(f"{role}_size")),
    )


def hf_source(model_cfg: Mapping[str, Any], role: str) -> WeightSource | None:
    """The Hub source named by ``hf_repo``, standing for the weights of ``role``."""
    repo = model_cfg.get("hf_repo")
    if not repo:
        return None
    filename = _str_or_none(model_cfg.get("hf_filename"))
    return WeightSource(
        kind="hf",
        location=str(repo),
        role=role,
        revision=_str_or_none(model_cfg.get("hf_revision")),
        filenames=(filename,) if filename else HF_WEIGHT_FILES,
        sha256=_str_or_none(model_cfg.get("hf_sha256")),
        size=_int_or_none(model_cfg.get("hf_size")),
    )


HUB_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
"""What a Hub repo id looks like (``owner/name``)."""


def checkpoint_source(model_cfg: Mapping[str, Any]) -> WeightSource | None:
    """The Hub folder named by a vision-language type's ``checkpoint`` (a repo id, not a local path)."""
    repo = _str_or_none(model_cfg.get("checkpoint"))
    if repo is None or not HUB_REPO_ID.fullmatch(repo) or Path(repo).expanduser().exists():
        return None
    return WeightSource(kind="hf", location=repo, role="checkpoint", revision=_str_or_none(model_cfg.get("hf_revision")),
                        filenames=(), folder=True)


def default_role(model_cfg: Mapping[str, Any]) -> str | None:
    """Which weights a ``model`` block loads: ``finetuned``, ``pretrained`` or ``None`` (random init)."""
    if model_cfg.get("load_finetuned") and model_cfg.get("finetuned"):
        return "finetuned"
    if model_cfg.get("load_pretrained") and model_cfg.get("pretrained"):
        return "pretrained"
    if model_cfg.get("hf_repo") and (model_cfg.get("load_finetuned") or model_cfg.get("load_pretrained")):
        return "finetuned" if model_cfg.get("load_finetuned") else "pretrained"
    return None


def default_sources(model_cfg: Mapping[str, Any]) -> list[WeightSource]:
    """The sources of the weights a ``model`` block loads, preferred first; ``[]`` for random init.

    A local path given for the role is used alone (it is the user's choice). Otherwise the Hub
    copy (``hf_repo``) comes before the original URL. ``hf_repo`` stands for the weights of the
    type itself: it is used for ``finetuned``, and for ``pretrained`` only when the type has no
    ``finetuned`` weights.
    """
    role = default_role(model_cfg)
    if role is None:
        return []
    own = role_source(model_cfg, role)
    if own is not None and own.kind == "file":
        return [own]
    sources = []
    hub_role = "finetuned" if model_cfg.get("finetuned") else "pretrained" if model_cfg.get("pretrained") else role
    if role == hub_role and (hub := hf_source(model_cfg, role)) is not None:
        sources.append(hub)
    if own is not None:
        sources.append(own)
    return sources


@dataclass(frozen=True)
class ZooEntry:
    """One model type of one registered arch and where its weights come from.

    Attributes:
        arch, model_type: the names ``load_model`` takes.
        config_path: the shipped YAML the entry is derived from.
        task: what the model does (``zoo.task`` in the YAML; ``""`` if not given).
        sources: the default weights' sources, preferred first (``[]``: random init).
        pretrained: the ``pretrained`` source when the type loads ``finetuned`` weights by default
            (``download --source pretrained`` fetches it), else ``None``.
        skeleton_overrides: constructor arguments to build the network without downloads.
        published_parameters: the parameter count the publisher gives (``None``: not given).
    """

    arch: str
    model_type: str
    config_path: str
    task: str = ""
    sources: tuple[WeightSource, ...] = ()
    pretrained: WeightSource | None = None
    skeleton_overrides: Mapping[str, Any] = field(default_factory=dict)
    published_parameters: int | None = None

    @property
    def random_init(self) -> bool:
        """True when the type has no weights to download."""
        return not self.sources

    @property
    def name(self) -> str:
        return f"{self.arch} {self.model_type}"

    def download_command(self, which: str = "auto") -> str:
        """The exact command that fetches this entry's weights (``which`` as in :meth:`source`)."""
        return download_command(self.arch, self.model_type, which)

    def source(self, which: str = "auto") -> list[WeightSource]:
        """Sources for ``which``: ``auto`` (all, preferred first), ``hf``, ``url``, ``pretrained``."""
        if which == "auto":
            return list(self.sources)
        if which == "pretrained":
            return [self.pretrained] if self.pretrained else [s for s in self.sources if s.role == "pretrained"]
        picked = [s for s in self.sources if s.kind == which or (which == "url" and s.kind == "file")]
        return picked


def download_command(arch: str | None, model_type: str | None, which: str = "auto") -> str:
    """``python -m lavis.zoo download ARCH TYPE`` (placeholders where a name is unknown)."""
    extra = "" if which == "auto" else f" --source {which}"
    return f"python -m lavis.zoo download {arch or 'ARCH'} {model_type or 'TYPE'}{extra}"


def entry_from_config(arch: str, model_type: str, cfg: DictConfig | Mapping[str, Any], config_path: str) -> ZooEntry:
    """The zoo entry of a model type from its shipped YAML (``model`` and optional ``zoo`` blocks)."""
    plain = plain_dict(cfg)
    model_cfg = dict(plain.get("model") or {})
    zoo_cfg = dict(plain.get("zoo") or {})
    folder = checkpoint_source(model_cfg)
    sources = tuple(default_sources(model_cfg)) or ((folder,) if folder is not None else ())
    pretrained = None
    if default_role(model_cfg) == "finetuned":
        pretrained = role_source(model_cfg, "pretrained")
    return ZooEntry(
        arch=arch,
        model_type=model_type,
        config_path=config_path,
        task=str(zoo_cfg.get("task", "")),
        sources=sources,
        pretrained=pretrained,
        skeleton_overrides=dict(zoo_cfg.get("skeleton_overrides") or {}),
        published_parameters=_int_or_none(zoo_cfg.get("published_parameters")),
    )


def entries() -> list[ZooEntry]:
    """Every model type of every registered arch, sorted by arch then type."""
    from lavis.common.registry import registry

    out = []
    for arch in registry.list_models():
        cls = registry.get_model_class(arch)
        for model_type in cls.model_types():
            path = cls.default_config_path(model_type)
            out.append(entry_from_config(arch, model_type, load_dict_config(path), path))
    return out


def get_entry(arch: str, model_type: str) -> ZooEntry:
    """The entry of ``arch``/``model_type``; unknown names list the valid ones."""
    from lavis.common.registry import registry

    cls = registry.get_model_class(arch)
    if model_type not in cls.PRETRAINED_MODEL_CONFIG_DICT:
        raise UnknownNameError(f"{arch} model_type", model_type, cls.model_types())
    path = cls.default_config_path(model_type)
    return entry_from_config(arch, model_type, load_dict_config(path), path)


def entry_for_location(location: str) -> tuple[ZooEntry, WeightSource] | None:
    """The entry and source whose URL (or Hub repo id) is ``location``, if any (for pins and hints)."""
    for entry in entries():
        for src in list(entry.sources) + ([entry.pretrained] if entry.pretrained else []):
            if src.location == location:
                return entry, src
    return None
