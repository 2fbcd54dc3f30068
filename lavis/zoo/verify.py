"""Check every cached weight file against its pins or its manifest record; print pin lines.

``python -m lavis.zoo verify`` re-hashes each file of each zoo entry that is on this machine
(Hub files in the Hugging Face cache, there each weight file of a Hub repo folder, URL files in
``cache_root()/models/``) and every other file
the lavis manifest records. A file whose size or sha256 differs from its pinned value (in the
model-type YAML) or, without a pin, from what was recorded at its first download is a mismatch:
it is reported by name with the expected and actual values and the command that fetches it
again, and the command exits non-zero.

``--print`` also prints, for every file that checks out, the YAML lines that pin it
(``hf_revision``, ``hf_filename``, ``hf_sha256``, ``hf_size``; ``finetuned_sha256``, ...; a repo
folder only ``hf_revision``) for a maintainer to paste under ``model:`` in the model-type YAML.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from lavis.zoo.entries import WeightSource, ZooEntry

Status = Literal["ok", "mismatch", "unrecorded"]


@dataclass
class FileCheck:
    """The result of checking one cached file.

    Attributes:
        path: the file (for Hub files, the snapshot path in the Hugging Face cache).
        label: what it is (``blip_caption base_coco hf:REPO``, or the URL of a manifest record).
        status: ``ok``; ``mismatch`` (size or sha256 differ); ``unrecorded`` (no pin and no record:
            nothing to check against; it is recorded the first time it is used).
        problems: one line per difference, naming expected and actual values and what to do.
        sha256, size: the file's actual hash and size.
        revision: for Hub files, the commit the file belongs to.
    """

    path: Path
    label: str
    status: Status
    problems: list[str] = field(default_factory=list)
    sha256: str | None = None
    size: int | None = None
    revision: str | None = None
    entry: ZooEntry | None = None
    source: WeightSource | None = None
    filename: str | None = None


def _compare(path: Path, sha: str, size: int, pinned_sha: str | None, pinned_size: int | None,
             rec: dict | None, where_pinned: str, fix: str) -> tuple[Status, list[str]]:
    from lavis.common.download import manifest_path

    exp_sha, exp_size = pinned_sha, pinned_size
    origin = f"pinned in {where_pinned}"
    if exp_sha is None and exp_size is None:
        if rec is None:
            return "unrecorded", []
        exp_sha, exp_size = rec.get("sha256"), rec.get("size")
        origin = f"recorded in {manifest_path()} on {rec.get('recorded_at')} from {rec.get('url')}"
    problems = []
    if exp_size is not None and size != exp_size:
        problems.append(f"{path}: size expected {exp_size} bytes ({origin}), actual {size} bytes.")
    if exp_sha is not None and sha != exp_sha:
        problems.append(f"{path}: sha256 expected {exp_sha} ({origin}), actual {sha}.")
    if problems:  # what to do, once
        problems[-1] += f" {fix}"
    return ("mismatch" if problems else "ok"), problems


def _hub_filename(path: Path, source: WeightSource) -> str:
    names = [n for n in source.filenames if path.name == Path(n).name]
    return names[0] if names else path.name


def check_entry_file(entry: ZooEntry, source: WeightSource, path: Path) -> FileCheck:
    """Re-hash one cached file of a zoo entry and compare it with its pins, else its record."""
    from lavis.common.download import lookup, sha256_file
    from lavis.zoo.fetch import hub_commit

    which = "pretrained" if source is entry.pretrained else ("hf" if source.kind == "hf" else "url")
    fix = (f"The file changed after it was downloaded (or is corrupt) and will not be used: fetch it again with "
           f"`{entry.download_command(which)} --force --no-assets`.")
    rec = lookup(path)
    sha, size = sha256_file(path), path.stat().st_size
    status, problems = _compare(path, sha, size, source.sha256, source.size, rec, entry.config_path, fix)
    filename = _hub_filename(path, source) if source.kind == "hf" else None
    revision = (hub_commit(path, filename) or (rec or {}).get("revision")) if filename else None
    return FileCheck(path=path, label=f"{entry.name} {source.describe()}", status=status, problems=problems,
                     sha256=sha, size=size, revision=revision, entry=entry, source=source, filename=filename)


def verify_cache(entries: Sequence[ZooEntry] | None = None) -> list[FileCheck]:
    """Check every cached file of the zoo entries and every other file the manifest records."""
    from lavis.common.download import manifest_records, sha256_file
    from lavis.zoo import entries as all_entries
    from lavis.zoo.fetch import folder_weight_files, local_file

    checks: list[FileCheck] = []
    seen: set[str] = set()
    for entry in entries if entries is not None else all_entries():
        for source in list(entry.sources) + ([entry.pretrained] if entry.pretrained else []):
            path = local_file(source)
            if path is None:
                continue
            files = [path / n for n in folder_weight_files(path) or []] if source.folder else [path]
            for file in files:
                if os.path.realpath(file) in seen:
                    continue
                seen.add(os.path.realpath(file))
                checks.append(check_entry_file(entry, source, file))
    for path, rec in sorted(manifest_records().items()):
        if os.path.realpath(path) in seen or not path.is_file():
            continue
        seen.add(os.path.realpath(path))
        fix = _record_fix(path, str(rec.get("url") or ""))
        sha, size = sha256_file(path), path.stat().st_size
        status, problems = _compare(path, sha, size, None, None, rec, "", fix)
        checks.append(FileCheck(path=path, label=str(rec.get("url")), status=status, problems=problems,
                                sha256=sha, size=size, revision=rec.get("revision")))
    return checks


def _record_fix(path: Path, url: str) -> str:
    """What to do about a changed file that only the manifest knows (not a zoo entry's)."""
    from lavis.zoo.entries import is_url
    from lavis.zoo.fetch import url_cache_path
    from lavis.zoo.resolve import url_command

    try:
        ours = is_url(url) and os.path.realpath(url_cache_path(url)) == os.path.realpath(path)
    except ValueError:  # a URL without a file name is not one the zoo downloaded
        ours = False
    if ours:
        return (f"The file changed after it was downloaded (or is corrupt) and will not be used: fetch it again with "
                f"`{url_command(url)} --force`.")
    return ("The file changed after it was downloaded (or is corrupt) and will not be used: the command that "
            "downloaded it fetches it again (it moves the damaged copy aside first).")


def pin_lines(check: FileCheck) -> list[str]:
    """YAML lines (indented for the ``model:`` block) that pin a zoo entry's checked file."""
    if check.entry is None or check.source is None or check.status == "mismatch":
        return []
    source = check.source
    if source.kind == "hf":
        lines = []
        if check.revision:
            lines.append(f"  hf_revision: {check.revision}")
        if source.folder:  # a repo folder is pinned by its commit; each weight file by its record
            return lines
        if check.filename:
            lines.append(f"  hf_filename: {check.filename}")
        return lines + [f"  hf_sha256: {check.sha256}", f"  hf_size: {check.size}"]
    return [f"  {source.pin_prefix}_sha256: {check.sha256}", f"  {source.pin_prefix}_size: {check.size}"]


def format_report(checks: Sequence[FileCheck], print_pins: bool = False) -> str:
    """The text ``verify`` prints: one line per file, the problems, then pin lines if asked."""
    if not checks:
        return "no cached files to verify (nothing of the zoo is on this machine yet)"
    tags = {"ok": "OK        ", "mismatch": "MISMATCH  ", "unrecorded": "UNCHECKED "}
    lines = []
    for c in checks:
        note = " (no pin and no record: it is recorded the first time it is used)" if c.status == "unrecorded" else ""
        lines.append(f"{tags[c.status]}{c.label}: {c.path}{note}")
        lines += [f"    {p}" for p in c.problems]
    bad = sum(c.status == "mismatch" for c in checks)
    lines.append(f"{len(checks)} file(s) checked, {bad} mismatch(es)")
    if print_pins:
        by_entry: dict[str, list[str]] = {}
        for c in checks:
            if c.entry is not None:
                header = f"# {c.entry.name}: paste under `model:` in {c.entry.config_path}"
                known = by_entry.get(header, [])
                pins = [p for p in pin_lines(c) if p not in known]  # a folder's files share one commit
                if pins:
                    by_entry.setdefault(header, []).extend(pins)
        if by_entry:
            lines.append("")
            for header, pins in by_entry.items():
                lines += [header, *pins]
    return "\n".join(lines)
