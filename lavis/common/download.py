"""Downloading files over HTTP(S) into the cache: resumable, retried, verified, atomic, locked.

Plain URLs (original checkpoints, data set files) come through here; Hugging Face Hub repos go
through ``huggingface_hub``, which has its own cache.

- :func:`download_url` fetches one URL to one path. It resumes a ``<dest>.part`` left by an earlier
  try with an HTTP ``Range`` request, retries transient failures (connection errors, timeouts,
  HTTP 5xx/408/429, a body shorter than announced) with exponential backoff, checks the size and
  sha256 when they are known, and finishes atomically (fsync, rename, fsync of the folder). A file
  lock (``.locks/<name>.lock`` beside the file) makes several processes asking for the same file download it once; the
  others wait and then use the finished file.
- :func:`cached_file` maps a URL to ``cache_root()/<subdir>/<file name>``, downloads it when it is
  missing and records its sha256, size and source in the cache's manifest (``manifest.json``).
  Every later use checks the file against the pinned values or that record (cheaply: the hash is
  recomputed only when size or mtime changed). A file that does not match is never used: online
  it is moved aside to ``<name>.corrupt`` (with a warning naming it and what was wrong) and
  downloaded again; offline it is an error naming the command that fetches it.

This is the only module that speaks HTTP. Its callers: :mod:`lavis.zoo.fetch` (model weights
from checkpoint URLs) and :mod:`lavis.datasets.download.steps` (data set files).

Settings (environment variables):

- ``LAVIS_CACHE_HOME``: the cache root (default ``~/.cache/lavis``), see :func:`lavis.common.paths.cache_root`;
- ``LAVIS_OFFLINE`` or ``HF_HUB_OFFLINE`` = ``1``/``true``/``yes``/``on``: never touch the network;
  a missing file raises :class:`OfflineError` with the command that fetches it;
- ``LAVIS_MIRROR=<base>``: fetch ``https://host/a/b`` from ``<base>/host/a/b`` instead
  (``http(s)://`` or ``file://`` bases), for clusters that serve the files themselves.

This module imports neither torch nor an HTTP library beyond the standard one; callers import it
lazily so that ``import lavis`` stays light.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from lavis.common.errors import LavisError
from lavis.common.io import fsync_dir
from lavis.common.manifest import (  # noqa: F401  (re-exported: the cache's API is used from here)
    Problem,
    file_problems,
    forget,
    lookup,
    manifest_path,
    manifest_records,
    normalize_sha256,
    record,
    sha256_file,
    verify_file,
)
from lavis.common.paths import cache_root

__all__ = [
    "DownloadError", "IntegrityError", "OfflineError", "cached_file", "download_url", "forget", "is_offline",
    "lookup", "manifest_path", "manifest_records", "mirror_url", "record", "sha256_file", "verify_file",
]

logger = logging.getLogger(__name__)

OFFLINE_VARS = ("LAVIS_OFFLINE", "HF_HUB_OFFLINE")
MIRROR_VAR = "LAVIS_MIRROR"
_TRUE = {"1", "true", "yes", "on"}
_CHUNK = 1 << 20
_MAX_DELAY = 60.0
_RETRY_STATUS = {408, 429}
_USER_AGENT = "lavis-downloader/0.1 (+python urllib)"


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
class DownloadError(LavisError):
    """A URL could not be fetched (HTTP error or network failure after every retry)."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.url, self.status = url, status


class IntegrityError(LavisError):
    """A file whose size or sha256 is not the expected one (pinned, or recorded in the manifest).

    ``fetch_hint`` is set when the message already names the command that fixes it."""

    def __init__(self, message: str, *, path: Path | None = None, expected: str | int | None = None,
                 actual: str | int | None = None, fetch_hint: str | None = None):
        super().__init__(message)
        self.path, self.expected, self.actual, self.fetch_hint = path, expected, actual, fetch_hint


class OfflineError(LavisError):
    """Offline mode is on and a file that is not in the cache was asked for."""

    def __init__(self, message: str, *, path: Path | None = None, fetch_hint: str | None = None):
        super().__init__(message)
        self.path, self.fetch_hint = path, fetch_hint


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------
def is_offline() -> bool:
    """True when ``LAVIS_OFFLINE`` or ``HF_HUB_OFFLINE`` is ``1``, ``true``, ``yes`` or ``on``."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in OFFLINE_VARS)


def _offline_switch() -> str:
    for v in OFFLINE_VARS:
        if os.environ.get(v, "").strip().lower() in _TRUE:
            return f"{v}={os.environ[v]}"
    return "offline mode"


def mirror_url(url: str) -> str:
    """``url`` as fetched through ``$LAVIS_MIRROR``: ``https://host/a/b.pth`` -> ``<base>/host/a/b.pth``.

    Unchanged when the variable is unset, for URLs that are not ``http(s)://``, and for URLs
    that already start with the mirror base. The query string is kept; credentials are dropped.
    """
    base = os.environ.get(MIRROR_VAR, "").strip().rstrip("/")
    if not base:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or url.startswith(base + "/"):
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    rest = host + (parts.path or "/")
    if parts.query:
        rest += "?" + parts.query
    return f"{base}/{rest}"


def _url_basename(url: str) -> str:
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    if not name or name in (".", ".."):
        raise ValueError(f"cannot take a file name from {url!r}; pass filename=...")
    return name


# ---------------------------------------------------------------------------------------------
# one HTTP request
# ---------------------------------------------------------------------------------------------
class _Transient(Exception):
    """A failure worth retrying (the next try resumes from what the .part file holds)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class _Permanent(Exception):
    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class _Part:
    """The ``.part`` file and a running sha256 of the bytes it holds (so nothing is read twice)."""

    def __init__(self, path: Path):
        self.path = path
        self._hasher: hashlib._Hash | None = None
        self._hashed = 0
        self.validator: str | None = None  # ETag / Last-Modified of the answer that started the file
        self.total: int | None = None  # the file's full size as the server announced it

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def open(self, fresh: bool) -> BinaryIO:
        if fresh or not self.path.exists():
            self._hasher, self._hashed = hashlib.sha256(), 0
            return open(self.path, "wb")
        have = self.size()
        if self._hasher is None or self._hashed != have:  # resuming another run's bytes
            self._hasher, self._hashed = hashlib.sha256(), 0
            with open(self.path, "rb") as f:
                for block in iter(lambda: f.read(_CHUNK), b""):
                    self._hasher.update(block)
                    self._hashed += len(block)
        return open(self.path, "ab")

    def write(self, f: BinaryIO, chunk: bytes) -> None:
        f.write(chunk)
        assert self._hasher is not None
        self._hasher.update(chunk)
        self._hashed += len(chunk)

    def sha256(self) -> str:
        if self._hasher is not None and self._hashed == self.size():
            return self._hasher.hexdigest()
        return sha256_file(self.path)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self._hasher, self._hashed, self.validator, self.total = None, 0, None, None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 10-99/100`` -> (10, 100); ``bytes */100`` -> (None, 100); unknown parts -> None."""
    if not value or not value.strip().lower().startswith("bytes"):
        return None, None
    spec = value.strip()[5:].strip()
    span, _, total = spec.partition("/")
    start = int(span.split("-")[0]) if span and span != "*" and span.split("-")[0].isdigit() else None
    return start, int(total) if total.strip().isdigit() else None


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _attempt(url: str, part: _Part, *, timeout: float, progress: bool, label: str) -> None:
    """One request appending to ``part``; returns when the server has sent the whole file."""
    have = part.size()
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        if part.validator:  # the server sends the whole file instead if it changed since
            headers["If-Range"] = part.validator
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        with contextlib.closing(e):
            if e.code == 416 and have:
                _, total = _content_range(e.headers.get("Content-Range"))
                if total is None or total == have:
                    return  # the .part already holds the whole file; the caller verifies it
                part.discard()
                raise _Transient(f"the server's file has {total} bytes but {have} were held; starting again",
                                 status=416) from None
            if e.code in _RETRY_STATUS or e.code >= 500:
                raise _Transient(f"HTTP {e.code} {e.reason}", status=e.code,
                                 retry_after=_retry_after(e.headers)) from None
            raise _Permanent(f"HTTP {e.code} {e.reason}", status=e.code) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            raise _Permanent(f"TLS certificate check failed: {e.reason}") from None
        raise _Transient(f"cannot connect: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise _Transient(f"{type(e).__name__}: {e}") from None
    except ValueError as e:  # malformed URL
        raise _Permanent(f"not a valid URL: {e}") from None

    from tqdm.auto import tqdm

    with resp:
        status = resp.status or 200  # file:// answers carry no status
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        if status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have or None not in (total, part.total) and total != part.total:
                part.discard()
                raise _Transient(f"the server answered from byte {start} of {total}, not {have} of {part.total}; "
                                 "starting again", status=206)
            f = part.open(fresh=False)
        elif 200 <= status < 300 and status != 204:
            if have:
                logger.info("%s: the server ignored the Range request; downloading again from the start", label)
            start, total = 0, length
            f = part.open(fresh=True)
            etag = resp.headers.get("ETag")
            part.validator = etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified")
        else:
            raise _Permanent(f"unexpected HTTP {status} answer", status=status)
        end = start + length if length is not None else total
        part.total = total if total is not None else part.total
        done = start
        with f, tqdm(total=end, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                     disable=None if progress else True, leave=False) as bar:  # None: off when not a TTY
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    got = f"{done} of {end or '?'} bytes"
                    raise _Transient(f"connection lost after {got} ({type(e).__name__})") from None
                if not chunk:
                    break
                part.write(f, chunk)
                done += len(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    if end is not None and done < end:
        raise _Transient(f"the body ended after {done} of {end} bytes")


# ---------------------------------------------------------------------------------------------
# a whole download, with retries and verification
# ---------------------------------------------------------------------------------------------
def _fetch(url: str, dest: Path, *, sha256: str | None, size: int | None, retries: int, backoff: float,
           timeout: float, progress: bool) -> str:
    """Download ``url`` (through the mirror) to ``dest``; returns its sha256. Caller holds the lock."""
    real = mirror_url(url)
    via = f" (through {MIRROR_VAR}: {real})" if real != url else ""
    part = _Part(dest.with_name(dest.name + ".part"))
    if size is not None and part.size() > size:
        part.discard()
    if part.size():
        logger.info("resuming %s from byte %d", dest.name, part.size())
    else:
        logger.info("downloading %s%s to %s", url, via, dest)
    failures, high_water, fresh_retry_used = 0, part.size(), False
    while True:
        try:
            _attempt(real, part, timeout=timeout, progress=progress, label=dest.name)
        except _Permanent as e:
            hint = {
                404: "The file is not at this address: check the URL, and update the entry that names it if "
                     "the file moved.",
                401: "The server wants credentials: the file may need a login or an accepted licence; fetch it by "
                     f"hand and put it at {dest}.",
                403: "The server refused access: the file may need a login or an accepted licence; fetch it by "
                     f"hand and put it at {dest}.",
            }.get(e.status or 0, f"Check the URL; or fetch the file by hand and put it at {dest}.")
            raise DownloadError(f"could not download {url}{via}: {e}. {hint}", url=url, status=e.status) from None
        except _Transient as e:
            now = part.size()
            if now > high_water:  # progress was made: a flaky link may take many tries on a big file
                high_water, failures = now, 0
            failures += 1
            if failures > retries:
                kept = f"; the {now} bytes already fetched are kept in {part.path} and the next run resumes " \
                       "from them" if now else ""
                raise DownloadError(
                    f"could not download {url}{via} after {failures} tries: {e}{kept}. Check the network "
                    f"connection and run again, or set {MIRROR_VAR} to a reachable mirror, or put the file at "
                    f"{dest} yourself.", url=url, status=e.status) from None
            delay = min(backoff * 2 ** (failures - 1), _MAX_DELAY)
            if e.retry_after is not None:
                delay = max(delay, min(e.retry_after, _MAX_DELAY))
            logger.warning("%s: %s; retrying in %.1fs (try %d of %d)", dest.name, e, delay, failures + 1, retries + 1)
            time.sleep(delay)
            continue
        actual_size, actual_sha = part.size(), part.sha256()
        problems: list[tuple[str, str | int, str | int]] = []
        if size is not None and actual_size != size:
            problems.append(("size", size, actual_size))
        if sha256 is not None and actual_sha != sha256:
            problems.append(("sha256", sha256, actual_sha))
        if problems:
            part.discard()
            what = "; ".join(f"{k} is {a}, expected {x}" for k, x, a in problems)
            if not fresh_retry_used:
                fresh_retry_used = True
                logger.warning("%s: downloaded file is wrong (%s); downloading it again from zero", dest.name, what)
                continue
            kind, expected, actual = problems[-1]
            raise IntegrityError(
                f"{dest} downloaded from {url}{via} was wrong twice in a row: {what}. Nothing was saved. If the "
                f"publisher replaced the file, update the pinned {kind} for this URL; if you use a mirror, check that "
                "it serves the same file as the original address.", path=dest, expected=expected, actual=actual)
        os.replace(part.path, dest)
        fsync_dir(dest.parent)
        logger.info("saved %s (%d bytes, sha256 %s)", dest, actual_size, actual_sha)
        return actual_sha


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """Hold ``<dest folder>/.locks/<name>.lock`` (an inter-process file lock; kept out of the data
    folder's listing); says so when it has to wait for another process."""
    from filelock import FileLock, Timeout

    lock_dir = dest.parent / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_dir / (dest.name + ".lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("waiting for another process that is downloading %s", dest)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def download_url(url: str, dest: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
                 retries: int = 5, backoff: float = 0.5, timeout: float = 30.0, progress: bool = True,
                 fetch_hint: str | None = None) -> Path:
    """Fetch ``url`` (through :func:`mirror_url`) to ``dest`` and return ``dest``.

    An existing ``dest`` is returned as it is, after checking it against the given ``size``/``sha256``,
    else against its manifest record if it has one; this is also how processes that waited on the
    lock while another one downloaded get the file, and why offline mode raises
    :class:`OfflineError` only when ``dest`` is missing. An existing ``dest`` that fails the check
    is damaged: online it is moved to ``<dest>.corrupt`` and downloaded again; offline it raises
    :class:`IntegrityError` naming ``fetch_hint``. ``retries`` is the number of
    further tries after a transient failure, waiting ``backoff * 2**k`` seconds (capped at 60 s); a
    try that got more bytes than any before resets the count. A finished download whose size or
    sha256 is wrong is deleted and fetched once more from zero; wrong again raises
    :class:`IntegrityError`. ``timeout`` is the socket timeout in seconds; ``progress`` shows a tqdm
    bar on a terminal. ``fetch_hint`` is the command that fetches the file, shown in the
    :class:`OfflineError`. ``download_url`` does not write the manifest (:func:`cached_file` and
    :func:`record` do).
    """
    dest = Path(dest)
    sha256 = normalize_sha256(sha256)
    hint = fetch_hint or _generic_hint_download(url, dest)
    if dest.exists():
        problems = file_problems(dest, sha256, size, full=False)
        if not problems:
            return dest
        if is_offline():
            raise _damaged_offline_error(dest, problems, hint)
    elif is_offline():
        raise _offline_error(dest, url, hint)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        if dest.exists():  # damaged, or another process finished it while this one waited
            problems = file_problems(dest, sha256, size, full=False)
            if not problems:
                return dest
            _set_aside(dest, problems)
        _fetch(url, dest, sha256=sha256, size=size, retries=retries, backoff=backoff, timeout=timeout,
               progress=progress)
    return dest


# ---------------------------------------------------------------------------------------------
# the cache and its manifest
# ---------------------------------------------------------------------------------------------
def _generic_hint_download(url: str, dest: Path) -> str:
    return f"python -c \"from lavis.common.download import download_url; download_url('{url}', '{dest}')\""


def _generic_hint_cached(url: str, subdir: str, filename: str | None) -> str:
    extra = f", filename='{filename}'" if filename else ""
    return (f"python -c \"from lavis.common.download import cached_file; "
            f"cached_file('{url}', subdir='{subdir}'{extra})\"")


def _offline_error(path: Path, url: str, hint: str) -> OfflineError:
    return OfflineError(
        f"{path.name} is not in the cache ({path}) and {_offline_switch()} forbids downloading it from {url}. "
        f"Fetch it on a machine with network access:\n    {hint}\nthen copy {path} (and {manifest_path()}) to "
        f"the same place on this machine, or point LAVIS_CACHE_HOME at a filled cache, or turn offline mode off.",
        path=path, fetch_hint=hint)


def cached_file(url: str, *, subdir: str = "models", filename: str | None = None, sha256: str | None = None,
                size: int | None = None, fetch_hint: str | None = None, progress: bool = True, retries: int = 5,
                backoff: float = 0.5, timeout: float = 30.0, force: bool = False) -> Path:
    """The cached copy of ``url``: ``cache_root()/subdir/(filename or the URL's file name)``.

    A cached file is checked against the pinned ``sha256``/``size`` when given, else against its
    manifest record (hashing again only when its size or mtime changed). A file that fails the
    check is never used: online it is moved to ``<name>.corrupt`` (a warning says which file and
    what was wrong) and downloaded again; offline it raises :class:`IntegrityError` naming
    ``fetch_hint``, the command that fetches it. A file found without a record (a cache filled by
    hand) is hashed and recorded on first use. A missing file raises :class:`OfflineError` in
    offline mode, else is downloaded with :func:`download_url` (``retries``, ``backoff``,
    ``timeout`` and ``progress`` mean what they mean there) and recorded in the manifest.
    ``force`` downloads again even when a good copy is cached (the old copy is replaced only once
    the new one is complete and matches the pins); offline it raises :class:`OfflineError`.
    """
    sha256 = normalize_sha256(sha256)
    name = filename or _url_basename(url)
    path = cache_root() / subdir / name
    hint = fetch_hint or _generic_hint_cached(url, subdir, filename)
    if is_offline():
        if not path.exists():
            raise _offline_error(path, url, hint)
        if force:
            raise OfflineError(f"downloading {path.name} again (force) needs the network, and {_offline_switch()} "
                               f"forbids it. Turn offline mode off, or leave out the force option to use the cached "
                               f"{path}.", path=path, fetch_hint=hint)
    elif force and path.exists():
        logger.info("downloading %s again (force); the cached copy stays until the new one is complete", path)
    if path.exists() and not force:
        problems = _cached_problems(path, url, sha256, size)
        if not problems:
            return _use_cached(path, url, sha256)
        if is_offline():
            raise _damaged_offline_error(path, problems, hint)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        if path.exists() and not force:  # damaged, or another process fetched it while this one waited
            problems = _cached_problems(path, url, sha256, size)
            if not problems:
                return _use_cached(path, url, sha256)
            _set_aside(path, problems)
        actual = _fetch(url, path, sha256=sha256, size=size, retries=retries, backoff=backoff, timeout=timeout,
                        progress=progress)
        _record_quietly(path, url=url, sha256=actual, size=path.stat().st_size)
    return path


def _cached_problems(path: Path, url: str, sha256: str | None, size: int | None) -> list[Problem]:
    """What is wrong with a cached file (cheap check); raises when the file belongs to another URL."""
    rec = lookup(path)
    if rec is not None and sha256 is None and rec.get("url") not in (None, url):
        raise IntegrityError(
            f"{path} was downloaded from {rec['url']}, not from {url}: two sources share this file name. Give one "
            f"of them a distinct file name or subdir, or delete {path} to download it again.", path=path,
            expected=url, actual=rec.get("url"))
    return file_problems(path, sha256, size, full=False)


def _set_aside(path: Path, problems: list[Problem]) -> Path:
    """Move a damaged cached file to ``<name>.corrupt`` (replacing an older one), forget its record, warn."""
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    forget(path)
    logger.warning("%s is damaged (%s); moved it to %s and downloading it again", path,
                   "; ".join(p.describe() for p in problems), aside)
    return aside


def _damaged_offline_error(path: Path, problems: list[Problem], hint: str) -> IntegrityError:
    first = problems[0]
    return IntegrityError(
        f"{'; '.join(str(p) for p in problems)}. The cached file was changed, truncated or corrupted after it was "
        f"downloaded, so it is not used, and {_offline_switch()} forbids fetching it again. Where the network is "
        f"reachable, run:\n    {hint}\n(it moves the damaged file aside to {path.name}.corrupt and downloads it "
        f"again), then copy {path} (and {manifest_path()}) here; or turn offline mode off. If the published file "
        "really changed, update its pinned value instead.",
        path=path, expected=first.expected, actual=first.actual, fetch_hint=hint)


def _use_cached(path: Path, url: str, sha256: str | None) -> Path:
    """A cached file that checked out: refresh its record when it is stale, and return it."""
    rec = lookup(path)
    st = path.stat()
    stale = rec is None or rec.get("size") != st.st_size or rec.get("mtime") != st.st_mtime or (
        sha256 is not None and rec.get("sha256") != sha256) or rec.get("url") != url
    if stale:  # verified just now (or first seen): record what the file is, so later checks are cheap
        known = sha256 or (rec or {}).get("sha256") or sha256_file(path)
        _record_quietly(path, url=url, sha256=known, size=st.st_size, revision=(rec or {}).get("revision"))
    return path


def _record_quietly(path: Path, **kw) -> None:
    try:
        record(path, **kw)
    except OSError as e:  # a read-only pre-filled cache still works, just without a record
        logger.warning("could not record %s in %s: %s", path, manifest_path(), e)
