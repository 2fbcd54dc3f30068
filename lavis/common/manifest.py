"""The download manifest: what each cached file is (source URL, sha256, size, revision, mtime),
and checking a file against it or against pinned values.

``cache_root()/manifest.json`` maps paths (relative to the cache, so a cache can be copied to
another node) to records. Writes are atomic and serialised by a file lock. Used by
:mod:`lavis.common.download` (which re-exports these names), :mod:`lavis.zoo` and
:mod:`lavis.datasets.download.steps`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from lavis.common.errors import LavisError
from lavis.common.io import atomic_write_text
from lavis.common.paths import cache_root


_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as 64 lower-case hex digits."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def normalize_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    s = sha256.strip().lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise ValueError(f"sha256 {sha256!r} is not 64 hex digits; pin the full sha256 of the file, or none")
    return s


def manifest_path() -> Path:
    """The JSON file that records every downloaded file: ``cache_root()/manifest.json``."""
    return cache_root() / "manifest.json"


def _manifest_key(path: Path) -> str:
    """Paths inside the cache are stored relative to it, so a cache can be copied to another node."""
    real, root = os.path.realpath(path), os.path.realpath(cache_root())
    try:
        return PurePosixPath(Path(real).relative_to(root)).as_posix()
    except ValueError:
        return Path(real).as_posix()


def _read_manifest() -> dict:
    mp = manifest_path()
    try:
        text = mp.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": 1, "files": {}}
    try:
        data = json.loads(text)
        if not isinstance(data.get("files"), dict):
            raise ValueError("no 'files' table")
        return data
    except ValueError as e:
        raise LavisError(
            f"the download manifest {mp} is unreadable ({e}). Delete it (the cached files stay; each is hashed and "
            "recorded again on its next use), then run `python -m lavis.zoo verify` to check them against pinned "
            "values where known.") from e


def record(path: Path, *, url: str, sha256: str, size: int, revision: str | None = None) -> None:
    """Record a cached file in the manifest (its source, sha256, size, revision and current mtime).

    The manifest is rewritten atomically under ``manifest.json.lock``.
    """
    from filelock import FileLock

    path = Path(path)
    entry = {
        "url": url, "sha256": normalize_sha256(sha256), "size": int(size), "revision": revision,
        "mtime": path.stat().st_mtime, "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    mp = manifest_path()
    mp.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(mp) + ".lock"):
        data = _read_manifest()
        data["files"][_manifest_key(path)] = entry
        atomic_write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", mp)


def lookup(path: Path) -> dict | None:
    """The manifest record of a cached file (url, sha256, size, revision, mtime, recorded_at), or None."""
    rec = _read_manifest()["files"].get(_manifest_key(Path(path)))
    return dict(rec) if rec is not None else None


def forget(path: Path) -> bool:
    """Remove a file's record from the manifest (the file itself is left alone); True if there was one."""
    from filelock import FileLock

    mp = manifest_path()
    if not mp.exists():
        return False
    with FileLock(str(mp) + ".lock"):
        data = _read_manifest()
        if data["files"].pop(_manifest_key(Path(path)), None) is None:
            return False
        atomic_write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", mp)
    return True


def manifest_records() -> dict[Path, dict]:
    """Every record in the manifest, by absolute path (for ``verify`` over the whole cache)."""
    root = cache_root()
    return {(Path(k) if Path(k).is_absolute() else root / k): dict(v) for k, v in _read_manifest()["files"].items()}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a cached file: its size, its sha256, or that it is missing."""

    path: Path
    what: str  # "size" or "sha256" or "missing"
    expected: str | int | None
    actual: str | int | None
    source: str

    def __str__(self) -> str:
        return f"{self.path}: {self.describe()}"

    def describe(self) -> str:
        """The problem without the path: ``size is 10 bytes, expected 20 bytes (pinned)``."""
        if self.what == "missing":
            return "missing"
        unit = " bytes" if self.what == "size" else ""
        return f"{self.what} is {self.actual}{unit}, expected {self.expected}{unit} ({self.source})"


def file_problems(path: Path, sha256: str | None, size: int | None, *, full: bool) -> list[Problem]:
    """What is wrong with ``path`` compared with the pinned ``sha256``/``size``, else its record (see
    :func:`verify_file`); an empty list when nothing is."""
    path = Path(path)
    if not path.is_file():
        return [Problem(path, "missing", None, None, "")]
    rec = lookup(path)
    recorded = f"recorded in {manifest_path()} on {rec.get('recorded_at')} from {rec.get('url')}" if rec else ""
    exp_size, size_src = (size, "pinned") if size is not None else (
        (rec.get("size"), recorded) if rec else (None, ""))
    exp_sha, sha_src = (sha256, "pinned") if sha256 is not None else (
        (rec.get("sha256"), recorded) if rec else (None, ""))
    st = path.stat()
    if exp_size is not None and st.st_size != exp_size:
        return [Problem(path, "size", exp_size, st.st_size, size_src)]
    if exp_sha is None:
        return []
    unchanged = rec is not None and rec.get("sha256") == exp_sha and rec.get("size") == st.st_size \
        and rec.get("mtime") == st.st_mtime
    if not full and unchanged:
        return []
    actual = sha256_file(path)
    return [] if actual == exp_sha else [Problem(path, "sha256", exp_sha, actual, sha_src)]


def verify_file(path: Path, *, sha256: str | None = None, size: int | None = None, full: bool = True) -> list[str]:
    """What is wrong with a cached file, one line each (empty list: nothing found wrong).

    Compares with the pinned ``sha256``/``size`` when given, else with the file's manifest record.
    A file with neither pinned values nor a record cannot be checked and gives an empty list
    (see :func:`lookup`). ``full=False`` skips hashing when size and mtime equal the record's
    (the cheap check done on every use); ``full=True`` always hashes.
    """
    return [str(p) for p in file_problems(Path(path), normalize_sha256(sha256), size, full=full)]
