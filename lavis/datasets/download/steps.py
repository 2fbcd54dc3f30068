"""Run the steps of a data set spec (fetch a file, extract an archive, fetch a listed set of files,
stop at a manual step, verify shards) and tell which steps are already done.

Called by :mod:`lavis.datasets.download.api` (``download_dataset``, ``--list``); the steps
themselves are declared in :mod:`~lavis.datasets.download.spec`. This module speaks no HTTP: every
download goes through :func:`lavis.common.download.download_url` (resume with HTTP Range,
retries, atomic rename, file lock, ``LAVIS_MIRROR``, ``LAVIS_OFFLINE``), and archives are
extracted with :func:`lavis.common.archive.safe_extract` into a staging folder and moved into place.

Every step is idempotent. A single file is finished when it exists and matches its manifest record
(``cache_root()/manifest.json``: sha256, size, source URL) or, for a file placed by hand, once it has
been checked against the published checksums and recorded; a file that no longer matches its record
is fetched again (offline: an error naming the command that fetches it). An archive step is finished
when its marker (``<top>/.lavis_state/<archive>.json``) exists and the folders it fills are there
(folders copied or extracted by hand count too); a finished step is skipped without touching the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

from lavis.common import download as dl
from lavis.common.errors import LavisError
from lavis.common.io import atomic_write_text
from lavis.datasets.download.spec import Archive, ListedFiles, Manual, Part, RemoteFile, Shards, Step, top_folder
from lavis.datasets.download.webscale import brace_pattern, shard_files, verify_shard

Status = Literal["present", "fetched", "manual", "failed"]
_CHUNK = 1 << 20


class ManualStepRequired(LavisError):
    """A step only a person can do; the message says what, where to put the result, and what to re-run."""


class DatasetDownloadError(LavisError):
    """A data set step failed (bad archive layout, missing prerequisite, files that could not be fetched)."""


@dataclass
class Context:
    """What every step needs: the data root, options, where to print, and the command to re-run."""

    root: Path
    command: str
    keep_archives: bool = False
    progress: bool = True
    retries: int = 5
    log: Callable[[str], None] = print


@dataclass
class Outcome:
    """The result of one step: ``present`` (was already there), ``fetched``, ``manual`` or ``failed``."""

    part: str
    step: str
    status: Status
    message: str = ""
    offline_path: str | None = None  # set when the step failed only because offline mode is on


@dataclass
class DatasetReport:
    """Every step's outcome for one data set; ``exit_code`` is 0 (all there), 3 (a manual step is
    needed, nothing failed) or 1 (a step failed)."""

    name: str
    root: Path
    command: str = ""
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def manual(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "manual"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.manual

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 3 if self.manual else 0

    def summary(self) -> str:
        """What happened, in a few lines: counts, then the full text of every manual step and failure."""
        counts = {s: sum(1 for o in self.outcomes if o.status == s) for s in ("fetched", "present")}
        extra = "".join(f", {n} {what}" for n, what in ((len(self.manual), "manual step(s) needed"),
                                                        (len(self.failed), "failed")) if n)
        lines = [(f"{self.name}: {'done' if self.ok else 'incomplete'} ({counts['fetched']} fetched, "
                 f"{counts['present']} already present{extra})")]
        lines += [o.message for o in self.manual]
        offline = [o.offline_path for o in self.failed if o.offline_path]
        lines += [f"{self.name}: [{o.part}] {o.step} failed: {o.message}" for o in self.failed if not o.offline_path]
        if offline:
            tops = sorted({str(self.root / Path(p).relative_to(self.root).parts[0])
                           for p in offline if Path(p).is_relative_to(self.root)})
            lines.append(f"{self.name}: offline mode is on (LAVIS_OFFLINE / HF_HUB_OFFLINE) and these files are not "
                         "in the cache:")
            lines += [f"    {p}" for p in offline]
            lines.append(f"  fetch them on a machine with network access: {self.command}")
            lines.append(f"  then copy {', '.join(tops) or 'them'} and {self.root / 'manifest.json'} to the same place "
                         "here, or point LAVIS_CACHE_HOME at a filled cache, or turn offline mode off.")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- helpers
def exists_nonempty(path: Path) -> bool:
    """A non-empty file, or a folder with at least one entry."""
    if path.is_file():
        return path.stat().st_size > 0
    if path.is_dir():
        return any(True for _ in path.iterdir())
    return False


def hash_file(path: Path) -> tuple[str, str]:
    """``(md5, sha256)`` of a file in one pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An inter-process lock on ``path`` (parallel jobs extract an archive once)."""
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path)):
        yield


def _write_marker(path: Path, payload: dict) -> None:
    payload = {**payload, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", path)


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _check_published(path: Path, md5: str | None, sha256: str | None, size: int | None, source: str,
                     origin: str) -> str:
    """Hash ``path``, compare with the published values and return its sha256; raise IntegrityError on a
    mismatch, naming the file, both values, where the value was published and what to do."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise dl.IntegrityError(
            f"{path} ({origin}): size is {actual_size} bytes, the published size is {size} ({source}). Delete the file and "
            "run the command again; if it fails again the host may have replaced the file.",
            path=path, expected=size, actual=actual_size)
    actual_md5, actual_sha = hash_file(path)
    for kind, expected, actual in (("md5", md5, actual_md5), ("sha256", sha256, actual_sha)):
        if expected is not None and actual != expected.lower():
            raise dl.IntegrityError(
                f"{path} ({origin}): {kind} is {actual}, the published {kind} is {expected} ({source or 'spec'}). "
                "The file is not used. Delete it and run the command again; if it "
                "fails again the host (or your LAVIS_MIRROR) serves a different file: report it so the pinned value "
                "can be checked.", path=path, expected=expected, actual=actual)
    return actual_sha


def ensure_file(url: str | None, path: Path, ctx: Context, *, md5: str | None = None, sha256: str | None = None,
                size: int | None = None, source: str = "") -> Status:
    """Make ``path`` hold the verified file from ``url``; ``present`` when it already did.

    A file with a manifest record is checked cheaply against it (and fetched again when it no
    longer matches); a file placed by hand is checked against the published values and recorded;
    a missing file is downloaded (through the mirror, resumable), checked and recorded.
    """
    if path.is_file():
        rec = dl.lookup(path)
        if rec is not None:
            problems = dl.verify_file(path, sha256=sha256, size=size, full=False)
            if not problems:
                return "present"
            if dl.is_offline():  # cannot fetch it again here: keep the file and say what is wrong
                raise dl.IntegrityError(
                    f"{'; '.join(problems)}. The file changed after it was downloaded and is not used; offline mode "
                    f"is on, so it is not fetched again. Run {ctx.command} where the network is reachable, or copy a "
                    "good copy over it.", path=path)
            ctx.log(f"  {path} no longer matches its record ({'; '.join(problems)}); fetching it again")
            path.unlink()
            dl.forget(path)
        else:
            actual_sha = _check_published(path, md5, sha256, size, source, "placed by hand")
            dl.record(path, url=url or f"file://{path}", sha256=actual_sha, size=path.stat().st_size)
            ctx.log(f"  found {path} (placed by hand): checked and recorded")
            return "present"
    if url is None:
        raise DatasetDownloadError(f"{path} is missing and has no download URL")
    if not dl.is_offline():
        ctx.log(f"  fetching {url}")
    dl.download_url(url, path, sha256=sha256, size=size, progress=ctx.progress, retries=ctx.retries,
                    fetch_hint=ctx.command)
    try:
        actual_sha = _check_published(path, md5, sha256, size, source, f"downloaded from {url}")
    except dl.IntegrityError:
        path.unlink(missing_ok=True)
        raise
    dl.record(path, url=url, sha256=actual_sha, size=path.stat().st_size)
    return "fetched"


# ------------------------------------------------------------------------------------------------- archives
def _find(staging: Path, wanted: str, *, directory: bool) -> Path | None:
    """``staging/wanted`` if it is there, else the shallowest entry named like ``wanted``'s last part."""
    direct = staging / wanted
    if (direct.is_dir() if directory else direct.is_file()):
        return direct
    name = PurePosixPath(wanted).name
    hits = [p for p in staging.rglob(name) if (p.is_dir() if directory else p.is_file())]
    return min(hits, key=lambda p: len(p.parts)) if hits else None


def _merge_move(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; folders are merged entry by entry, files replace what is there."""
    if src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)
        src.rmdir()
        return
    if dst.is_dir() and not src.is_dir():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)


def _listing(folder: Path, limit: int = 12) -> str:
    names = sorted(str(p.relative_to(folder)) + ("/" if p.is_dir() else "") for p in folder.rglob("*")
                   if len(p.relative_to(folder).parts) <= 2)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "(nothing)"


def extract_archive(archive_path: Path, spec: Archive, ctx: Context) -> int:
    """Extract ``archive_path`` safely into a staging folder, then move ``select`` (or ``pick``) into place.

    Returns the number of files placed. Raises :class:`DatasetDownloadError` when the archive does not
    hold what the spec says (naming what it does hold); ``UnsafeArchiveError`` for traversal or links out.
    """
    from lavis.common.archive import safe_extract

    root = ctx.root
    staging = root / top_folder(spec.into) / ".lavis_state" / f"extract-{spec.filename}"
    if staging.exists():
        shutil.rmtree(staging)
    ctx.log(f"  extracting {archive_path.name} -> {root / spec.into}")
    try:
        safe_extract(archive_path, staging)
        if spec.pick:
            placed = 0
            for name, rel in spec.pick:
                src = _find(staging, name, directory=False)
                if src is None:
                    raise DatasetDownloadError(
                        f"{archive_path} has no file named {name} (it holds: {_listing(staging)}); the archive at the "
                        "source may have changed: report it so the spec can be updated.")
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, root / rel)
                placed += 1
            return placed
        src = staging if spec.select is None else _find(staging, spec.select, directory=True)
        if src is None:
            raise DatasetDownloadError(
                f"{archive_path} has no folder {spec.select} (it holds: {_listing(staging)}); the archive at the "
                "source may have changed: report it so the spec can be updated.")
        placed = sum(1 for p in src.rglob("*") if p.is_file())
        target = root / spec.into
        if src != staging and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, target)  # the whole folder appears at once: never half there
            return placed
        target.mkdir(parents=True, exist_ok=True)
        for child in list(src.iterdir()):  # each top-level entry appears at once (a rename)
            _merge_move(child, target / child.name)
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def archive_done(spec: Archive, root: Path) -> bool:
    """True when every ``expect`` path of the archive exists (no network).

    Normally the marker is there too; extracted files copied from another machine (or extracted by
    hand) without it also count, so a pre-filled cache is not downloaded again.
    """
    return all(exists_nonempty(root / e) for e in spec.expect)


def _adopt_extracted(spec: Archive, ctx: Context) -> None:
    marker = ctx.root / spec.marker_path
    if not marker.is_file():
        ctx.log(f"  found {', '.join(spec.expect)} without a marker (placed by hand or copied): using it as it is")
        _write_marker(marker, {"archive": spec.filename, "url": spec.url, "into": spec.into, "placed_by_hand": True})


def run_archive(spec: Archive, ctx: Context) -> Status:
    """Fetch (when it has a URL), verify, extract, mark done; skip when the result is already there."""
    root = ctx.root
    if archive_done(spec, root):
        _adopt_extracted(spec, ctx)
        return "present"
    with _lock(root / top_folder(spec.into) / ".lavis_state" / f"{spec.filename}.lock"):
        if archive_done(spec, root):  # another process finished it while this one waited
            _adopt_extracted(spec, ctx)
            return "present"
        archive_path = root / spec.download_path
        ensure_file(spec.url, archive_path, ctx, md5=spec.md5, sha256=spec.sha256, size=spec.size,
                    source=spec.checksum_source)
        placed = extract_archive(archive_path, spec, ctx)
        missing = [e for e in spec.expect if not exists_nonempty(root / e)]
        if missing:
            raise DatasetDownloadError(
                f"{archive_path.name} was extracted but {', '.join(str(root / m) for m in missing)} is still missing; "
                "the archive's layout is not the expected one: report it so the spec can be updated.")
        rec = dl.lookup(archive_path) or {}
        _write_marker(root / spec.marker_path, {"archive": spec.filename, "url": spec.url, "into": spec.into,
                                                "sha256": rec.get("sha256"), "files": placed})
        if not ctx.keep_archives:
            archive_path.unlink(missing_ok=True)
            dl.forget(archive_path)
            ctx.log(f"  removed {archive_path} (pass --keep-archives to keep it)")
    return "fetched"


# ------------------------------------------------------------------------------------------------- other steps
def _basename(url: str) -> str:
    return unquote(PurePosixPath(urlsplit(url).path).name)


def listed_done(spec: ListedFiles, root: Path) -> bool:
    return (root / spec.marker_path).is_file() and exists_nonempty(root / spec.into)


def run_listed(spec: ListedFiles, ctx: Context) -> Status:
    """Fetch every file listed in the index JSON; files already there are skipped; failures are listed."""
    root = ctx.root
    if listed_done(spec, root):
        return "present"
    index = root / spec.index
    if not index.is_file():
        raise DatasetDownloadError(f"{index} is missing: it lists the files to fetch; run the whole part again")
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))[spec.list_key]
        urls = [e[spec.url_field] for e in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetDownloadError(f"{index} is not the expected list ({spec.list_key}[*].{spec.url_field}): {exc}")
    from tqdm.auto import tqdm

    into = root / spec.into
    into.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in tqdm(urls, desc=spec.into, unit="file", disable=not ctx.progress):
        dest = into / _basename(url)
        if dest.is_file() and dest.stat().st_size > 0:
            continue
        try:
            dl.download_url(url, dest, progress=False, retries=ctx.retries, fetch_hint=ctx.command)
        except dl.DownloadError as exc:
            failures.append(f"{url}\t{exc}")
    if failures:
        failed_list = root / top_folder(spec.into) / ".lavis_state" / f"{into.name}.failed.txt"
        atomic_write_text("\n".join(failures) + "\n", failed_list)
        raise DatasetDownloadError(
            f"{len(failures)} of {len(urls)} files listed in {index.name} could not be fetched (list in {failed_list}); "
            f"run the command again to retry them: {ctx.command}")
    _write_marker(root / spec.marker_path, {"index": spec.index, "files": len(urls)})
    return "fetched"


def manual_done(spec: Manual, root: Path) -> bool:
    return all(exists_nonempty(root / e) for e in spec.expect)


def manual_message(spec: Manual, ctx: Context, dataset: str) -> str:
    """The instructions of a manual step with the real paths filled in."""
    root = ctx.root
    fill = {"root": str(root), "downloads": str(root / spec.downloads)}
    missing = [str(root / e) for e in spec.expect if not exists_nonempty(root / e)]
    lines = [f"{dataset}: manual step needed: {spec.what}", f"  page: {spec.url}"]
    lines += ["  " + line.format(**fill) for line in spec.instructions]
    lines.append(f"  missing: {', '.join(missing)}")
    lines.append(f"  then run again: {ctx.command}")
    return "\n".join(lines)


def run_manual(spec: Manual, ctx: Context, dataset: str) -> Status:
    """Done when ``expect`` exists; else extract archives the user dropped; else stop with instructions."""
    root = ctx.root
    if manual_done(spec, root):
        return "present"
    extracted = False
    for archive in spec.archives:
        if not archive_done(archive, root) and (root / archive.download_path).is_file():
            run_archive(archive, ctx)
            extracted = True
    if manual_done(spec, root):
        return "fetched" if extracted else "present"
    raise ManualStepRequired(manual_message(spec, ctx, dataset))


def shards_done(spec: Shards, root: Path) -> bool:
    marker = _read_marker(root / spec.marker_path)
    shards = shard_files(root / spec.into)
    if not marker or not shards:
        return False
    return bool(marker.get("shards") == [[p.name, p.stat().st_size] for p in shards])


def run_shards(spec: Shards, ctx: Context, dataset: str) -> Status:
    """Print the img2dataset command while there are no shards; verify them with webdataset once there are."""
    root = ctx.root
    into = root / spec.into
    if shards_done(spec, root):
        return "present"
    shards = shard_files(into)
    if not shards:
        fill = {"root": str(root), "url_list": str(root / spec.url_list), "into": str(into)}
        have_list = exists_nonempty(root / spec.url_list)
        lines = [(f"{dataset}: manual step needed: make the webdataset shards with img2dataset "
                 "(hours to days of crawling; run it where the network allows)")]
        if not have_list:
            lines.append(f"  first the URL list {root / spec.url_list} (see the url list step above)")
        lines += ["  " + c.format(**fill) for c in spec.command]
        lines.append(f"  result: {into}/00000.tar, 00001.tar, ... (each sample: <key>.jpg + <key>.txt + <key>.json)")
        lines.append(f"  then run again to verify the shards: {ctx.command}")
        raise ManualStepRequired("\n".join(lines))
    from tqdm.auto import tqdm

    checks = [verify_shard(p) for p in tqdm(shards, desc=f"verifying {spec.into}", unit="shard",
                                             disable=not ctx.progress)]
    bad = [c for c in checks if not c.ok]
    if bad:
        detail = "; ".join(
            f"{c.name}: {c.error or (f'{c.samples} samples, img2dataset counted {c.expected}' if c.expected is not None else 'no complete sample')}"
            for c in bad[:10])
        raise DatasetDownloadError(
            f"{len(bad)} of {len(checks)} shards in {into} are unreadable or incomplete ({detail}). Delete them (and "
            "their _stats.json / .parquet files) and run the img2dataset command again: it only redoes missing shards.")
    total = sum(c.samples for c in checks)
    _write_marker(root / spec.marker_path, {"shards": [[c.name, c.size] for c in checks],
                                            "samples": {c.name: c.samples for c in checks}, "total_samples": total})
    ctx.log(f"  {len(checks)} shards, {total} samples; builders read: {spec.into}/{brace_pattern(shards)}")
    return "fetched"


# ------------------------------------------------------------------------------------------------- dispatch
def run_step(step: Step, ctx: Context, dataset: str) -> Status:
    """Run one step; raises ManualStepRequired, OfflineError, DownloadError, IntegrityError, ..."""
    if isinstance(step, RemoteFile):
        return ensure_file(step.url, ctx.root / step.path, ctx, md5=step.md5, sha256=step.sha256, size=step.size,
                           source=step.checksum_source)
    if isinstance(step, Archive):
        return run_archive(step, ctx)
    if isinstance(step, ListedFiles):
        return run_listed(step, ctx)
    if isinstance(step, Manual):
        return run_manual(step, ctx, dataset)
    if isinstance(step, Shards):
        return run_shards(step, ctx, dataset)
    raise TypeError(f"unknown step type {type(step).__name__}")


def step_present(step: Step, root: Path) -> bool:
    """Whether a step's result is on disk (no network, no hashing): what ``--list`` shows."""
    if isinstance(step, RemoteFile):
        return (root / step.path).is_file()
    if isinstance(step, Archive):
        return archive_done(step, root)
    if isinstance(step, ListedFiles):
        return listed_done(step, root)
    if isinstance(step, Manual):
        return manual_done(step, root)
    if isinstance(step, Shards):
        return bool(shard_files(root / step.into))
    raise TypeError(f"unknown step type {type(step).__name__}")


def part_state(part: Part, root: Path) -> str:
    """``present``, ``missing``, ``partial`` (some steps done) or ``manual`` (missing, needs a person)."""
    done = [step_present(s, root) for s in part.steps]
    if all(done):
        return "present"
    if any(done):
        return "partial"
    return "manual" if any(isinstance(s, (Manual, Shards)) for s in part.steps) else "missing"
