"""Get model weight files onto this machine and make sure they are intact: Hub repos through
``huggingface_hub``, checkpoint URLs through :mod:`lavis.common.download` (the only HTTP code).

Called by :mod:`lavis.zoo.resolve` (which decides *which* weights) and, for "is it cached?"
questions that never touch the network (:func:`local_file`), by the listing, ``verify`` and
``model_zoo``.

Hub files live in Hugging Face's own cache (``HF_HOME`` / ``HF_HUB_CACHE``) and are fetched by
``hf_hub_download``, which resumes, honours ``HF_ENDPOINT`` and revisions; offline
(``LAVIS_OFFLINE`` or ``HF_HUB_OFFLINE``) only the cache is read. The first time lavis sees a
Hub file it records its sha256, size, URL and resolved commit in the lavis manifest, so that
later uses and ``python -m lavis.zoo verify`` can check it.

URL files go to ``cache_root()/models/`` through :func:`lavis.common.download.cached_file`
(mirror, resume, retries, lock, pins and manifest).

A cached file that no longer matches its pins or record (truncated, changed) is never used.
Online it is fetched again with a warning (a URL file is first moved aside to
``<name>.corrupt``; a Hub file is downloaded again over its blob); offline it is an error that
names the command that fetches it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

from lavis.common.download import (
    DownloadError,
    IntegrityError,
    OfflineError,
    cached_file,
    is_offline,
    lookup,
    record,
    sha256_file,
    verify_file,
)
from lavis.common.errors import CheckpointError
from lavis.common.paths import cache_root
from lavis.zoo.entries import HUB_WEB, WeightSource

log = logging.getLogger(__name__)

MODELS_SUBDIR = "models"
#: what a folder source fetches of a Hub repo in transformers' layout: config, processor, tokenizer
#: and chat-template files, and the safetensors weights (not the same weights again in other formats)
HUB_FOLDER_PATTERNS = ("*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "*.safetensors")
HUB_INDEX = "model.safetensors.index.json"


class WeightsOfflineError(OfflineError, CheckpointError):
    """Offline, and the weights a model needs are not in any cache. The message names the files
    looked for and the command that fetches them."""


class WeightsUnavailableError(DownloadError, CheckpointError):
    """No source of a model's weights could be reached. The message lists what each source said."""


class WeightsIntegrityError(IntegrityError, CheckpointError):
    """A cached weight file does not match its pinned or recorded hash or size."""


class WeightsAccessError(CheckpointError):
    """The Hub refused a gated or private repo (HTTP 401/403). The message says how to get access."""


# -- where files are (no network) ------------------------------------------------------------------
def url_cache_path(url: str) -> Path:
    """Where the zoo keeps the file of checkpoint ``url``: ``cache_root()/models/<file name>``."""
    name = os.path.basename(urlparse(url).path)
    if not name:
        raise ValueError(f"cannot name a cache file after {url!r}: it has no file name")
    return cache_root() / MODELS_SUBDIR / name


def hf_cache_dir() -> str:
    """The Hugging Face hub cache folder in use (``HF_HUB_CACHE``, default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hf_cached_file(repo_id: str, filenames: Sequence[str], revision: str | None = None) -> Path | None:
    """The first of ``filenames`` of Hub repo ``repo_id`` in the local Hugging Face cache, or ``None``."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        try:
            hit = try_to_load_from_cache(repo_id, filename, revision=revision)
        except Exception:  # a malformed repo id must not break listing the zoo
            return None
        if isinstance(hit, str):
            return Path(hit)
    return None


def folder_weight_files(folder: Path) -> list[str] | None:
    """The weight files of a transformers checkpoint folder (every shard that
    ``model.safetensors.index.json`` names, else ``model.safetensors``) if all are there, else ``None``."""
    index = folder / HUB_INDEX
    if index.is_file():
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    else:
        names = ["model.safetensors"]
    return names if all((folder / n).is_file() for n in names) else None


def hf_cached_folder(source: WeightSource) -> Path | None:
    """The snapshot folder of a folder source in the Hugging Face cache, if it is complete."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(source.location, revision=source.revision,
                                        allow_patterns=list(HUB_FOLDER_PATTERNS), local_files_only=True))
    except Exception:  # not cached, or partly; a malformed repo id must not break listing the zoo
        return None
    return folder if folder_weight_files(folder) is not None else None


def local_file(source: WeightSource) -> Path | None:
    """The local file (the folder, for a folder source) of ``source`` if it is on this machine (no
    network), else ``None``."""
    if source.folder:
        return hf_cached_folder(source)
    if source.kind == "hf":
        return hf_cached_file(source.location, source.filenames, source.revision)
    if source.kind == "url":
        path = url_cache_path(source.location)
        return path if path.is_file() else None
    path = Path(source.location).expanduser()
    return path if path.is_file() else None


def hub_commit(path: str | os.PathLike, filename: str) -> str | None:
    """The commit of a file in the Hugging Face cache (``.../snapshots/<commit>/<filename>``)."""
    parts = Path(path).parts
    depth = len(Path(filename).parts)
    if len(parts) > depth + 1 and parts[-depth - 2] == "snapshots":
        return parts[-depth - 1]
    return None


def hub_url(repo_id: str, filename: str, revision: str | None) -> str:
    """The ``resolve`` URL of a Hub file (at the endpoint ``huggingface_hub`` uses)."""
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo_id, filename, revision=revision)


# -- integrity -------------------------------------------------------------------------------------
def _mismatch_message(path: Path, what: str, expected: object, actual: object, fix: str) -> str:
    return f"{path}: {what} mismatch: expected {expected}, got {actual}. {fix}"


def check_hub_file(path: Path, source: WeightSource, filename: str, fix: str) -> None:
    """Check a Hub file against its pins and the manifest; record it the first time it is seen.

    The first sight hashes the whole file (and fails on a pin mismatch); later uses compare the
    size with the record and the record with the pins (``verify`` re-hashes everything).
    """
    path = Path(path)
    rec = lookup(path)
    commit = hub_commit(path, filename)
    if rec is None:
        size = path.stat().st_size
        if source.size is not None and size != source.size:
            raise WeightsIntegrityError(_mismatch_message(path, "size", source.size, size, fix))
        digest = sha256_file(path)
        if source.sha256 is not None and digest != source.sha256:
            raise WeightsIntegrityError(_mismatch_message(path, "sha256", source.sha256, digest, fix))
        record(path, url=hub_url(source.location, filename, commit), sha256=digest, size=size, revision=commit)
        log.info("recorded %s (sha256 %s, %d bytes, commit %s)", path, digest, size, commit)
        return
    if source.sha256 is not None and rec.get("sha256") not in (None, source.sha256):
        raise WeightsIntegrityError(_mismatch_message(path, "sha256", source.sha256, rec.get("sha256"), fix))
    problems = verify_file(path, sha256=rec.get("sha256"), size=source.size or rec.get("size"), full=False)
    if problems:
        raise WeightsIntegrityError("; ".join(problems) + f". {fix}")
    if rec.get("mtime") != path.stat().st_mtime:  # hashed just now and fine (e.g. downloaded again): keep checks cheap
        try:
            record(path, url=rec.get("url") or hub_url(source.location, filename, commit), sha256=rec["sha256"],
                   size=path.stat().st_size, revision=commit or rec.get("revision"))
        except OSError as e:  # a read-only pre-filled cache still works, it is just hashed on each use
            log.warning("could not update the record of %s: %s", path, e)


# -- fetching --------------------------------------------------------------------------------------
def _denied_status(error: BaseException) -> int | None:
    """401 or 403 when the Hub refused access somewhere in ``error``'s chain of causes, else ``None``."""
    from huggingface_hub.errors import HfHubHTTPError

    seen: BaseException | None = error
    while seen is not None:
        response = getattr(seen, "response", None) if isinstance(seen, HfHubHTTPError) else None
        if response is not None and response.status_code in (401, 403):
            return int(response.status_code)
        seen = seen.__cause__ or seen.__context__
    return None


def access_error(repo: str, status: int, hint: str) -> WeightsAccessError:
    """What to do when the Hub refuses ``repo``: accept its terms and give this machine a token."""
    return WeightsAccessError(
        f"the Hub refused access to {repo} (HTTP {status}): the repo is gated or private, or this token does not "
        f"reach it (an unknown repo also answers 401). For a gated model (such as PaliGemma, under Google's terms): "
        f"open {HUB_WEB}/{repo}, log in and accept its terms; then set HF_TOKEN on this machine to an access token "
        f"of that account ({HUB_WEB}/settings/tokens) and run `{hint}`."
    )


def fetch_hub_folder(source: WeightSource, *, hint: str, force: bool = False) -> Path:
    """The folder of a Hub repo in transformers' layout (:data:`HUB_FOLDER_PATTERNS`), downloaded
    into the Hugging Face cache if needed; offline, only the cache is read. Each weight file is
    checked like a single Hub file (recorded at first sight, later compared with the record).

    Raises:
        WeightsAccessError: the repo is gated or private and this machine has no token for it.
        WeightsOfflineError: offline and the folder is not cached (or only partly).
        WeightsUnavailableError: the Hub could not be reached, or the repo has no safetensors weights.
        WeightsIntegrityError: a weight file does not match its record (online, the repo is
            downloaded again first).
    """
    offline = is_offline()
    where = f"revision {source.revision}" if source.revision else "revision main"
    folder = _snapshot(source, hint, where, offline, force=force and not offline)
    names = folder_weight_files(folder)
    if names is None:
        raise WeightsUnavailableError(f"the Hub repo {source.location} ({where}) has no {HUB_INDEX} or model.safetensors "
                                      "with all its files: is it a checkpoint in transformers' layout?")

    def check_all(folder: Path) -> Path:
        for name in names:
            check_hub_file(folder / name, source, name, hint_fix(hint))
        return folder

    try:
        return check_all(folder)
    except WeightsIntegrityError as e:
        if offline or force:  # offline (name the command), or it was just downloaded afresh
            raise
        log.warning("%s; downloading %s again", _first_sentence(e), source.location)
        return check_all(_snapshot(source, hint, where, offline, force=True))


def _snapshot(source: WeightSource, hint: str, where: str, offline: bool, force: bool) -> Path:
    """``snapshot_download`` of a folder source, its errors turned into the zoo's."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(
            source.location, revision=source.revision, allow_patterns=list(HUB_FOLDER_PATTERNS),
            local_files_only=offline, force_download=force,
        ))
    except Exception as e:
        status = _denied_status(e)
        if status is not None:
            raise access_error(source.location, status, hint) from e
        if offline:
            raise WeightsOfflineError(f"the Hub repo {source.location} ({where}) is not (completely) in the Hugging "
                                      f"Face cache {hf_cache_dir()}") from e
        raise WeightsUnavailableError(f"could not fetch the Hub repo {source.location} ({where}) "
                                      f"({type(e).__name__}: {_first_sentence(e)})") from e


def fetch_hub(source: WeightSource, *, hint: str, force: bool = False) -> Path:
    """The weight file of a Hub source, downloaded into the Hugging Face cache if needed.

    Tries ``source.filenames`` in order (``model.safetensors`` before ``pytorch_model.bin``); a
    file the repo does not have is skipped. Offline, only the cache is read.

    Raises:
        WeightsOfflineError: offline and none of the files is cached.
        WeightsUnavailableError: the Hub could not be reached (or has none of the files).
        WeightsIntegrityError: the file does not match its pins or its record.
        WeightsAccessError: the repo is gated or private and this machine has no token for it.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    fix = hint_fix(hint)
    offline = is_offline()
    unreachable: LocalEntryNotFoundError | None = None
    failures: list[tuple[str, EntryNotFoundError]] = []  # LocalEntryNotFoundError is a subclass
    for filename in source.filenames:
        cache_only = offline or unreachable is not None  # once the Hub did not answer, only look in the cache
        try:
            path = hf_hub_download(
                source.location, filename, revision=source.revision, local_files_only=cache_only,
                force_download=force and not cache_only,
            )
        except LocalEntryNotFoundError as e:
            if not offline and unreachable is None:  # online, but the Hub did not answer (after HF's retries)
                unreachable = e
            failures.append((filename, e))
            continue
        except EntryNotFoundError as e:  # the repo (at this revision) has no such file
            failures.append((filename, e))
            continue
        except Exception as e:  # network, auth, unknown repo or revision: let the caller try another source
            status = _denied_status(e)
            if status is not None:
                raise access_error(source.location, status, hint) from e
            raise WeightsUnavailableError(
                f"could not fetch {filename} of the Hub repo {source.location} ({type(e).__name__}: "
                f"{_first_sentence(e)})"
            ) from e
        try:
            check_hub_file(Path(path), source, filename, fix)
        except WeightsIntegrityError as e:
            if cache_only or force:  # offline (name the command), or it was just downloaded afresh
                raise
            log.warning("%s; downloading %s of %s again", _first_sentence(e), filename, source.location)
            try:
                path = hf_hub_download(source.location, filename, revision=source.revision, force_download=True)
            except Exception as again:
                raise WeightsIntegrityError(f"{e} (downloading it again failed: {type(again).__name__}: "
                                            f"{_first_sentence(again)})") from again
            check_hub_file(Path(path), source, filename, fix)
        return Path(path)
    names = " or ".join(source.filenames)
    where = f"revision {source.revision}" if source.revision else "revision main"
    if unreachable is not None:
        raise WeightsUnavailableError(
            f"could not reach the Hub for {names} of {source.location} ({where}), and the Hugging Face cache "
            f"{hf_cache_dir()} does not have them: {_first_sentence(unreachable)}"
        )
    if offline:
        raise WeightsOfflineError(
            f"{names} of the Hub repo {source.location} ({where}) is not in the Hugging Face cache "
            f"{hf_cache_dir()}"
        )
    detail = "; ".join(f"{n}: {type(e).__name__}: {_first_sentence(e)}" for n, e in failures)
    raise WeightsUnavailableError(f"the Hub repo {source.location} ({where}) has none of {names} ({detail})")


def fetch_url(source: WeightSource, *, hint: str, force: bool = False) -> Path:
    """The file of a URL source in ``cache_root()/models/``, downloaded if needed (pins checked).

    A damaged cached copy is moved aside and fetched again online; offline it raises
    :class:`WeightsIntegrityError` naming ``hint``. ``force`` downloads again even if a good copy is cached.
    """
    try:
        return Path(
            cached_file(
                source.location, subdir=MODELS_SUBDIR, sha256=source.sha256, size=source.size, fetch_hint=hint,
                force=force,
            )
        )
    except OfflineError as e:
        raise WeightsOfflineError(f"{url_cache_path(source.location)} (from {source.location}) is not cached") from e
    except IntegrityError as e:
        if e.fetch_hint:  # the message already names the command that fixes it
            raise WeightsIntegrityError(str(e)) from e
        raise WeightsIntegrityError(f"{str(e).rstrip('.')}. {hint_fix(hint)}") from e
    except DownloadError as e:
        raise WeightsUnavailableError(str(e)) from e


def fetch_file(source: WeightSource) -> Path:
    """A local-path source: the path, which must exist."""
    path = Path(source.location).expanduser()
    if not path.is_file():
        raise CheckpointError(f"the {source.role} checkpoint {path} does not exist{_siblings_hint(path)}")
    return path


def _siblings_hint(path: Path) -> str:
    """What checkpoints the missing file's folder does hold (a run's output folder, say)."""
    try:
        found = sorted(p.name for p in path.parent.iterdir()
                       if p.is_file() and p.suffix in (".pth", ".pt", ".safetensors", ".bin"))
    except OSError:
        return ""
    if not found:
        return ""
    hint = f"; {path.parent} has {', '.join(found[:6])}{' ...' if len(found) > 6 else ''}"
    if path.name == "checkpoint_best.pth":
        hint += " (a run without run.valid_splits writes no checkpoint_best.pth: name another one)"
    return hint


def _first_sentence(error: BaseException) -> str:
    text = " ".join(str(error).split())
    cut = text.find(". ")
    return text[: cut + 1] if 0 < cut < 300 else text[:300]


def hint_fix(hint: str) -> str:
    """What to do about a weight file that fails its check: the exact command that fetches it again."""
    return (f"Fetch it again where the network is reachable with `{hint} --force`, or fix the pinned value if the "
            "published file changed.")


def fetch(sources: Sequence[WeightSource], *, owner: str, hint: str, force: bool = False) -> Path:
    """The local weight file of the first source that gives one (the Hub before URLs).

    Args:
        sources: preferred first (see :func:`lavis.zoo.entries.default_sources`).
        owner: who needs the weights (``"blip_caption base_coco"``), for messages.
        hint: the exact command that downloads them (``python -m lavis.zoo download ARCH TYPE``).
        force: download again even if a good copy is cached (online only).

    A source that cannot be reached is skipped for the next one. A cached file that fails its
    integrity check is fetched again from its own source when online; if that fails too, or
    offline, it stops everything (it is never used, and never silently replaced by another source).
    """
    if not sources:
        raise ValueError(f"{owner}: no weight sources (random init)")
    if force and is_offline():
        raise WeightsOfflineError(
            f"{owner}: --force downloads the weights again, which needs the network, but offline mode is on "
            "(LAVIS_OFFLINE / HF_HUB_OFFLINE). Turn it off, or run without --force to use the cached copy."
        )
    offline_misses: list[str] = []
    failures: list[str] = []
    for source in sources:
        try:
            if source.folder:
                return fetch_hub_folder(source, hint=hint, force=force)
            if source.kind == "hf":
                return fetch_hub(source, hint=hint, force=force)
            if source.kind == "url":
                return fetch_url(source, hint=hint, force=force)
            return fetch_file(source)
        except (WeightsIntegrityError, WeightsAccessError):
            raise
        except WeightsOfflineError as e:
            offline_misses.append(str(e.args[0]) if e.args else str(e))
        except (WeightsUnavailableError, DownloadError) as e:
            failures.append(f"{source.describe()}: {e}")
            log.warning("%s: %s; trying the next source", owner, e)
    if offline_misses and not failures:
        looked = "\n".join(f"  - {m}" for m in offline_misses)
        raise WeightsOfflineError(
            f"{owner}: offline mode is on (LAVIS_OFFLINE / HF_HUB_OFFLINE) and the weights are not on this "
            f"machine. Looked for:\n{looked}\nFetch them on a machine with network access and the same "
            f"LAVIS_CACHE_HOME and HF_HOME: `{hint}` (or set LAVIS_MIRROR / HF_ENDPOINT to a mirror you can "
            "reach and unset offline mode). See docs/offline.md."
        )
    tried = "\n".join(f"  - {m}" for m in failures + offline_misses)
    raise WeightsUnavailableError(
        f"{owner}: could not get the weights from any source:\n{tried}\nCheck the network (or set LAVIS_MIRROR / "
        f"HF_ENDPOINT to a mirror), then run `{hint}`; or pass a local file instead "
        "(load_model(..., checkpoint=PATH))."
    )
