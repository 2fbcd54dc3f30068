"""The download manifest: what each cached file is (source URL, sha256, size, revision, mtime).

``cache_root()/manifest.json`` maps paths (relative to the cache, so a cache can be copied to
another node) to records. Writes are atomic and serialised by a file lock.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from lavis.common.errors import LavisError
from lavis.common.io import atomic_write_text
from lavis.common.paths import cache_root


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
            f"the download manifest {mp} is unreadable ({e}). Delete it: each cached file is recorded again on its "
            "next use (check them first with `python -m lavis.zoo verify` against pinned values where known).") from e


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
