"""What the zoo shows: the listing (text and JSON) and the generated Markdown table.

Parameter counts come from building each model type on the meta device
(``torch.device("meta")``): shapes only, nothing allocated and nothing downloaded (an entry's
``zoo.skeleton_overrides`` swap in local assets, such as the in-repo tokenizer, where the real
ones would be downloaded; they do not change the count).
"""

from __future__ import annotations

import json
from typing import Any, Sequence
from urllib.parse import urlparse

from lavis.zoo.entries import HUB_WEB, WeightSource, ZooEntry


def build_skeleton(entry: ZooEntry, offline_safe: bool = True) -> Any:
    """The network of ``entry`` built on the meta device, without weights.

    Args:
        offline_safe: apply ``zoo.skeleton_overrides`` so that nothing is downloaded. With
            ``False`` the constructor runs as ``load_model`` would (fetching the tokenizer files
            into the Hugging Face cache, which is how ``download`` pre-fills it).
    """
    import torch

    from lavis.common.registry import registry
    from lavis.common.schema import merge_dict_configs

    cls = registry.get_model_class(entry.arch)
    cfg = cls.default_config(entry.model_type).model
    overrides: dict[str, Any] = {"model_type": entry.model_type, "load_finetuned": False, "load_pretrained": False}
    cfg = merge_dict_configs(cfg, overrides, dict(entry.skeleton_overrides) if offline_safe else {})
    with torch.device("meta"):
        return cls.from_config(cfg)


def parameter_count(entry: ZooEntry) -> int:
    """Parameters of ``entry``'s network (tied tensors counted once)."""
    model = build_skeleton(entry, offline_safe=True)
    return sum(p.numel() for p in model.parameters())


def format_count(n: int) -> str:
    """``1.5M``, ``224M``, ``1.2B``."""
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e8:
        return f"{n / 1e6:.0f}M"
    return f"{n / 1e6:.1f}M"


# -- listing -----------------------------------------------------------------------------------------
def _source_row(source: WeightSource) -> dict[str, Any]:
    from lavis.zoo.fetch import local_file

    path = local_file(source)
    return {
        "kind": source.kind,
        "location": source.location,
        "role": source.role,
        "revision": source.revision,
        "filenames": list(source.filenames) if source.kind == "hf" else None,
        "folder": source.folder,
        "sha256": source.sha256,
        "size": source.size,
        "cached": str(path) if path is not None else None,
    }


def list_rows(entries: Sequence[ZooEntry]) -> list[dict[str, Any]]:
    """One dict per entry: names, task, its sources (preferred first) with their cache state."""
    rows = []
    for e in entries:
        sources = [_source_row(s) for s in e.sources]
        rows.append({
            "arch": e.arch,
            "model_type": e.model_type,
            "task": e.task,
            "config": e.config_path,
            "random_init": e.random_init,
            "cached": e.random_init or any(s["cached"] for s in sources),
            "sources": sources,
            "pretrained": _source_row(e.pretrained) if e.pretrained else None,
            "download": None if e.random_init else e.download_command(),
        })
    return rows


def format_list(rows: Sequence[dict[str, Any]]) -> str:
    """The human-readable listing of :func:`list_rows`."""
    lines = []
    for r in rows:
        task = f"  [{r['task']}]" if r["task"] else ""
        lines.append(f"{r['arch']} {r['model_type']}{task}")
        if r["random_init"]:
            lines.append("    random init (no download)")
            continue
        for i, s in enumerate(r["sources"], 1):
            lines.append(f"    {i}. {_describe_row(s)}  {_state(s)}")
        if r["pretrained"]:
            lines.append(f"    pretrained: {_describe_row(r['pretrained'])}  {_state(r['pretrained'])}")
        if not r["cached"]:
            lines.append(f"    fetch: {r['download']}")
    return "\n".join(lines)


def _describe_row(s: dict[str, Any]) -> str:
    if s["kind"] == "hf":
        rev = f"@{s['revision']}" if s["revision"] else ""
        files = "the repo folder" if s["folder"] else " or ".join(s["filenames"])
        return f"hf:{s['location']}{rev} ({files})"
    return s["location"]


def _state(s: dict[str, Any]) -> str:
    return f"cached: {s['cached']}" if s["cached"] else "not cached"


def format_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(list(rows), indent=1)


# -- the Markdown table ------------------------------------------------------------------------------
def _md_source(source: WeightSource) -> str:
    if source.kind == "hf":
        rev = f" @ `{source.revision[:12]}`" if source.revision else ""
        folder = " (repo folder)" if source.folder else ""
        return f"Hub [{source.location}]({HUB_WEB}/{source.location}){rev}{folder}"
    if source.kind == "url":
        name = urlparse(source.location).path.rsplit("/", 1)[-1]
        return f"URL [{name}]({source.location})"
    return f"file `{source.location}`"


def _md_pins(entry: ZooEntry) -> str:
    if entry.random_init:
        return "-"
    pinned = []
    for s in entry.sources:
        keys = [k for k, v in (("revision", s.revision), ("sha256", s.sha256), ("size", s.size)) if v]
        if keys:
            pinned.append(f"{'Hub' if s.kind == 'hf' else 'URL'}: {', '.join(keys)}")
    return "; ".join(pinned) if pinned else "recorded at first download"


def markdown_table(entries: Sequence[ZooEntry]) -> str:
    """``docs/model_zoo.md``: the zoo table generated from the entries."""
    lines = [
        "# Model zoo",
        "",
        "<!-- Generated by `python -m lavis.zoo table --markdown > docs/model_zoo.md` from the model-type YAMLs",
        "     in lavis/configs/models/. Do not edit by hand: a test checks that this file equals the output. -->",
        "",
        "Every model type of every registered architecture. `load_model(arch, model_type)` fetches the weights",
        "from the first source that answers (the Hugging Face Hub copy, in transformers' layout, before the",
        "original LAVIS checkpoint, which goes through the LAVIS-layout converter), keeps them in the cache and",
        "checks them on every later use. `python -m lavis.zoo list` shows what is cached on this machine;",
        "`python -m lavis.zoo download ARCH TYPE` fetches ahead of time (see [offline use](offline.md)).",
        "A vision-language type's source is its Hub repo as a whole (\"repo folder\": config, processor and",
        "weights, sharded or not), loaded with transformers' `from_pretrained`; a gated repo (PaliGemma) needs",
        "its licence accepted on the Hub and `HF_TOKEN` set (see [post-training](post_training.md)).",
        "",
        "| Architecture | Model type | Task | Parameters | Weights (preferred first) | Pinned |",
        "|---|---|---|---:|---|---|",
    ]
    pretrained = []
    for e in entries:
        weights = "random init (no download)" if e.random_init else "; ".join(_md_source(s) for s in e.sources)
        lines.append(
            f"| {e.arch} | {e.model_type} | {e.task or '-'} | {format_count(parameter_count(e))} | {weights} "
            f"| {_md_pins(e)} |"
        )
        if e.pretrained is not None:
            pretrained.append(f"- {e.arch} {e.model_type}: {_md_source(e.pretrained)}")
    lines += [
        "",
        "Parameters are counted on the network built on the meta device (tied tensors once). \"Recorded at",
        "first download\": no checksum is published for the file, so the first complete download records its",
        "sha256 and size (and the Hub commit) in the cache's manifest and every later use is checked against",
        "that record; `python -m lavis.zoo verify --print` prints the lines that pin them in the YAML.",
    ]
    if pretrained:
        lines += [
            "",
            "Pre-trained weights, for fine-tuning (loaded with `load_finetuned: false`; fetch with",
            "`python -m lavis.zoo download ARCH TYPE --source pretrained`):",
            "",
            *pretrained,
        ]
    return "\n".join(lines) + "\n"
