"""Extracting downloaded archives without letting any member land outside the target folder.

:func:`safe_extract` reads the whole member list first and refuses the archive (raising
:class:`UnsafeArchiveError`, writing nothing at all) if any member

- has an absolute path (``/etc/x``, ``C:\\x``), a ``..`` component, a backslash, a NUL or an empty name;
- is a symbolic link: refused always, even one whose target looks inside, because a link is
  resolved when it is used and chains of links (``a -> .``, ``b -> a/..``) can leave the folder
  although each one looks harmless on its own;
- is a hard link to anything but an earlier regular file of the same archive (those are safe:
  they only share content that the archive itself brings);
- is a device, a FIFO or any other special file (in a zip: an entry whose Unix mode says so).

Only then does it extract, into a fresh folder next to the target (same file system), and move
the result in: renamed as a whole when the target does not exist yet, otherwise merged entry by
entry (existing files are replaced by the archive's). A failure leaves the target as it was.
Tar extraction also uses tarfile's ``filter="data"`` where Python has it, as a second guard.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from lavis.common.errors import LavisError

__all__ = ["ArchiveError", "UnsafeArchiveError", "safe_extract"]

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class ArchiveError(LavisError):
    """An archive that cannot be read or extracted (unsupported format, corrupt, conflicts with the target)."""


class UnsafeArchiveError(ArchiveError):
    """An archive with a member that could write outside the target folder; names the member and why."""

    def __init__(self, archive: Path, member: str, why: str):
        self.archive, self.member, self.why = archive, member, why
        super().__init__(
            f"refusing to extract {archive}: member {member!r} {why}. Nothing was extracted. If you trust this "
            "archive, inspect it and extract it by hand; otherwise delete it and download it again.")


def _clean_name(archive: Path, name: str) -> str:
    """The member's path relative to the target, as posix parts joined by '/'; raises if unsafe."""
    if not name or "\x00" in name:
        raise UnsafeArchiveError(archive, name, "has an empty name or a NUL character")
    if "\\" in name:
        raise UnsafeArchiveError(archive, name, "has a backslash in its name (a path separator on Windows)")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "has a '..' component, which could climb out of the target folder")
    return "/".join(parts)


def _check_tar(archive: Path, members: list[tarfile.TarInfo]) -> list[str]:
    """Check every tar member; returns the cleaned names of regular files and hard links, in order."""
    files: list[str] = []
    regular: set[str] = set()
    for m in members:
        name = _clean_name(archive, m.name)
        if m.issym():
            raise UnsafeArchiveError(archive, m.name, f"is a symbolic link (to {m.linkname!r}); links are refused")
        if m.islnk():
            try:
                target = _clean_name(archive, m.linkname)
            except UnsafeArchiveError:
                target = None
            if target not in regular:
                raise UnsafeArchiveError(
                    archive, m.name, f"is a hard link to {m.linkname!r}, which is not an earlier file of this archive")
        elif not (m.isreg() or m.isdir()):
            raise UnsafeArchiveError(archive, m.name, "is a device, FIFO or other special file")
        if not name:
            if not m.isdir():
                raise UnsafeArchiveError(archive, m.name, "would replace the target folder itself")
            continue
        if m.isreg() or m.islnk():
            regular.add(name)
            files.append(name)
    return files


def _check_zip(archive: Path, infos: list[zipfile.ZipInfo]) -> list[str]:
    files: list[str] = []
    for info in infos:
        name = _clean_name(archive, info.filename)
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            raise UnsafeArchiveError(archive, info.filename, "is a symbolic link (by its Unix mode); links are refused")
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(archive, info.filename, "is a device, FIFO or other special file")
        if not name:
            if not info.is_dir():
                raise UnsafeArchiveError(archive, info.filename, "would replace the target folder itself")
            continue
        if not info.is_dir():
            files.append(name)
    return files


def _kind(archive: Path) -> str:
    lower = archive.name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith(_TAR_SUFFIXES):
        return "tar"
    if zipfile.is_zipfile(archive):
        return "zip"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise ArchiveError(f"{archive} is not a tar (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) or zip archive")


def _conflicts(src: Path, dst: Path) -> None:
    """Raise before moving anything if merging ``src`` into ``dst`` would hit a link or a file/folder clash."""
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        d = dst / entry.name
        if d.is_symlink():
            raise ArchiveError(f"{d} is a symbolic link; refusing to extract through it. Remove it and run again.")
        if not d.exists():
            continue
        if entry.is_dir(follow_symlinks=False):
            if not d.is_dir():
                raise ArchiveError(f"{d} is a file but the archive has a folder there. Remove it and run again.")
            _conflicts(Path(entry.path), d)
        elif d.is_dir():
            raise ArchiveError(f"{d} is a folder but the archive has a file there. Remove it and run again.")


def _merge(src: Path, dst: Path) -> None:
    with os.scandir(src) as it:
        entries = list(it)
    for entry in entries:
        d = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and d.is_dir():
            _merge(Path(entry.path), d)
        else:
            os.replace(entry.path, d)


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract a .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz or .zip into ``dest``; returns the files written.

    Every member is checked before anything is written (see the module docstring for what is
    refused and why); an unsafe archive raises :class:`UnsafeArchiveError` and leaves ``dest`` and
    its parent untouched. The returned paths are the regular files (and hard links) of the
    archive, under ``dest``, in archive order. ``dest`` is created when missing; an existing
    ``dest`` is merged into (the archive's files replace files of the same name).
    """
    archive = Path(archive)
    dest = Path(os.path.realpath(dest))
    if not archive.is_file():
        raise ArchiveError(f"archive {archive} does not exist")
    if dest.exists() and not dest.is_dir():
        raise ArchiveError(f"cannot extract {archive} into {dest}: it is a file, not a folder")
    kind = _kind(archive)
    try:
        with (tarfile.open(archive, "r:*") if kind == "tar" else zipfile.ZipFile(archive)) as af:
            if isinstance(af, tarfile.TarFile):
                files = _check_tar(archive, af.getmembers())
            else:
                files = _check_zip(archive, af.infolist())
            tmp = _fresh_dir(dest)  # nothing is written before every member passed
            try:
                if isinstance(af, zipfile.ZipFile):
                    af.extractall(tmp)
                elif hasattr(tarfile, "data_filter"):
                    af.extractall(tmp, filter="data")
                else:  # Python without extraction filters: the checks above are the guard
                    af.extractall(tmp)
                if dest.exists():
                    _conflicts(tmp, dest)
                    _merge(tmp, dest)
                else:
                    os.rename(tmp, dest)  # the whole tree appears at once
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    except ArchiveError:
        raise
    except getattr(tarfile, "FilterError", ()) as e:  # the second guard caught what ours did not
        raise UnsafeArchiveError(archive, getattr(getattr(e, "tarinfo", None), "name", "?"), str(e)) from e
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, RuntimeError) as e:
        raise ArchiveError(f"could not extract {archive} into {dest}: {e}. If the archive is truncated or corrupt, "
                           "delete it and download it again.") from e
    return [dest / f for f in dict.fromkeys(files)]  # each name once, first-seen order


def _fresh_dir(dest: Path) -> Path:
    """An empty folder next to ``dest`` (same file system, so moves are renames), made with default permissions."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = dest.parent / f".{dest.name}.extract-{secrets.token_hex(6)}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue

