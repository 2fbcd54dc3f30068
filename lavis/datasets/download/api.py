"""Python entry points of the data set downloads: fetch a data set, show what is present, render the docs tables.

::

    from lavis.datasets.download import download_dataset
    report = download_dataset("coco", only="annotations")
    assert report.ok, report.summary()   # exit_code: 0 ok, 3 manual step needed, 1 failed
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from lavis.common import download as dl
from lavis.common.errors import LavisError, UnknownNameError
from lavis.common.paths import cache_root
from lavis.datasets.download.catalog import ALL_DATASETS, get_spec
from lavis.datasets.download.steps import (
    Context,
    DatasetReport,
    ManualStepRequired,
    Outcome,
    part_state,
    run_step,
)
from lavis.datasets.download.spec import KINDS, Archive, DatasetSpec, ListedFiles, Manual, Part, RemoteFile, Shards

#: ``--only`` choices; ``images`` selects every media part (images and videos).
ONLY_CHOICES: tuple[str, ...] = ("annotations", "images", "videos", "urls", "shards")


def data_root(root: str | Path | None = None) -> Path:
    """The folder data sets are laid out in: ``root`` when given, else the lavis cache root."""
    return Path(root).expanduser().resolve() if root else cache_root()


def select_parts(spec: DatasetSpec, only: str | None) -> list[Part]:
    """The parts of ``spec`` that ``--only`` selects (all when ``only`` is None)."""
    if only is None:
        return list(spec.parts)
    if only not in ONLY_CHOICES:
        raise UnknownNameError("part kind", only, list(ONLY_CHOICES))
    kinds = {"images": ("images", "videos")}.get(only, (only,))
    parts = [p for p in spec.parts if p.kind in kinds]
    if not parts:
        raise LavisError(f"{spec.name} has no {only} parts; its parts are: "
                         + ", ".join(f"{p.name} ({p.kind})" for p in spec.parts))
    return parts


def rerun_command(name: str, root: str | Path | None = None, only: str | None = None) -> str:
    """The command line that fetches ``name`` (what error messages tell the user to run)."""
    cmd = ["python", "-m", "lavis.datasets.download", name]
    if root:
        cmd += ["--root", str(data_root(root))]
    if only:
        cmd += ["--only", only]
    return " ".join(shlex.quote(c) for c in cmd)


def download_dataset(name: str, *, root: str | Path | None = None, only: str | None = None,
                     keep_archives: bool = False, progress: bool = True, retries: int = 5,
                     log: Callable[[str], None] = print) -> DatasetReport:
    """Fetch, verify and lay out the data set ``name`` (or the parts ``only`` selects) under the data root.

    Steps already finished are skipped. A failed or manual step does not stop the independent steps
    after it (every missing file is reported at once); steps that build on it (files listed in a
    fetched index, shard verification) are skipped. ``retries`` is how many times a failing transfer is retried within this run
    (an interrupted download resumes from its ``.part`` file on the next run in any case). The report holds every step's outcome; ``report.exit_code`` is 0 when all is
    there, 3 when a manual step is needed, 1 when something failed. Raises only for an unknown
    ``name`` or ``only``.
    """
    spec = get_spec(name)
    parts = select_parts(spec, only)
    ctx = Context(root=data_root(root), command=rerun_command(spec.name, root, only), keep_archives=keep_archives,
                  progress=progress, retries=retries, log=log)
    report = DatasetReport(spec.name, ctx.root, command=ctx.command)
    log(f"== {spec.name}: {spec.title}  (data root {ctx.root})")
    for part in parts:
        blocked = False  # an earlier step of this part failed: steps that build on it are skipped
        for step in part.steps:
            if blocked and isinstance(step, (ListedFiles, Shards)):
                continue
            try:
                status = run_step(step, ctx, spec.name)
            except ManualStepRequired as exc:
                report.outcomes.append(Outcome(part.name, step.describe(), "manual", str(exc)))
                log(f"  [{part.name}] {step.describe()}: manual step needed")
                blocked = True
                continue
            except (LavisError, OSError) as exc:
                message = str(exc) if isinstance(exc, LavisError) else f"{type(exc).__name__}: {exc}"
                offline = str(exc.path) if isinstance(exc, dl.OfflineError) and exc.path else None
                report.outcomes.append(Outcome(part.name, step.describe(), "failed", message, offline_path=offline))
                log(f"  [{part.name}] {step.describe()}: FAILED")
                blocked = True
                continue
            report.outcomes.append(Outcome(part.name, step.describe(), status))
            log(f"  [{part.name}] {step.describe()}: {'already present' if status == 'present' else status}")
    return report


# ----------------------------------------------------------------------------------------------------- listing
def _part_size(part: Part) -> str:
    sizes = [s.approx_size for s in part.steps if isinstance(s, Archive) and s.approx_size]
    return part.approx_size or (", ".join(sizes) if sizes else "")


def list_lines(names: list[str] | None = None, root: str | Path | None = None) -> list[str]:
    """``--list``: every data set (or ``names``), its parts, published sizes and whether each is present."""
    base = data_root(root)
    specs = [get_spec(n) for n in names] if names else list(ALL_DATASETS)
    lines = [f"data root: {base}", ""]
    state_text = {"present": "present", "missing": "missing", "partial": "partial",
                  "manual": "missing (manual step)"}
    for spec in specs:
        aliases = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        lines.append(f"{spec.name}{aliases}: {spec.title}  [{spec.homepage}]")
        for part in spec.parts:
            size = _part_size(part)
            size = f"  ~{size} (published)" if size else ""
            lines.append(f"    {part.name:<18} {part.kind:<12} {state_text[part_state(part, base)]:<22}{size}".rstrip())
    return lines


# ----------------------------------------------------------------------------------------------------- docs
def _how(step: object) -> tuple[str, str]:
    """(source, destination) of one step, for the docs table."""
    if isinstance(step, RemoteFile):
        return step.url, step.path
    if isinstance(step, Archive):
        if step.pick:
            return (step.url or "(dropped in by hand)"), ", ".join(rel for _, rel in step.pick)
        return (step.url or "(dropped in by hand)"), f"{step.into}/" + (f" (from {step.select}/)" if step.select else "")
    if isinstance(step, ListedFiles):
        return f"URLs listed in {step.index}", f"{step.into}/"
    if isinstance(step, Manual):
        return f"manual: {step.url}", ", ".join(step.expect)
    if isinstance(step, Shards):
        return "img2dataset (manual command)", f"{step.into}/"
    raise TypeError(type(step).__name__)


def markdown_tables() -> str:
    """The layout and sources tables of ``docs/datasets.md``, generated from the catalog."""
    out = ["| data set | what | path under the data root |", "|---|---|---|"]
    for spec in ALL_DATASETS:
        for i, (what, path) in enumerate(spec.layout):
            out.append(f"| {spec.name if i == 0 else ''} | {what} | `{path}` |")
    out += ["", "| data set | part | source | lands in | published size |", "|---|---|---|---|---|"]
    for spec in ALL_DATASETS:
        first = True
        for part in spec.parts:
            for step in part.steps:
                src, dst = _how(step)
                src_cell = src if not src.startswith("http") else f"<{src}>"
                size = _part_size(part) if step is part.steps[-1] else ""
                out.append(f"| {spec.name if first else ''} | {part.name} | {src_cell} | `{dst}` | {size} |")
                first = False
    return "\n".join(out) + "\n"


__all__ = [
    "KINDS",
    "ONLY_CHOICES",
    "data_root",
    "download_dataset",
    "list_lines",
    "markdown_tables",
    "rerun_command",
    "select_parts",
]
