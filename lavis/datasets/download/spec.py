"""What a data set download is made of: parts (annotations, images, videos, URL lists, shards), each a
sequence of steps. The table of real data sets lives in :mod:`lavis.datasets.download.catalog`.

Every path in a spec is relative to the data root (the lavis cache root, ``$LAVIS_CACHE_HOME`` or
``~/.cache/lavis``, unless ``--root`` says otherwise), which is where the builders' ``build_info``
``storage`` entries are resolved, so a downloaded file lies exactly where a builder looks for it.

Checksums: a spec carries an MD5, SHA-256 or byte size only where the value is *published* (by the
data set's host or in LAVIS's shipped configs), with ``checksum_source`` saying where. Files without
published values are recorded in the download manifest on their first complete download (SHA-256,
size, URL) and checked against that record afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

Kind = Literal["annotations", "images", "videos", "urls", "shards"]
KINDS: tuple[str, ...] = ("annotations", "images", "videos", "urls", "shards")


def top_folder(path: str) -> str:
    """The first component of a root-relative path (``coco`` for ``coco/images``): the data set's folder,
    which holds its ``downloads/`` (archives) and ``.lavis_state/`` (markers of finished steps)."""
    return PurePosixPath(path).parts[0]


@dataclass(frozen=True)
class RemoteFile:
    """One file fetched as is from ``url`` to ``root / path``.

    ``md5`` / ``sha256`` / ``size`` are set only when published (``checksum_source`` says where).
    """

    url: str
    path: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    checksum_source: str = ""

    def describe(self) -> str:
        return self.path


@dataclass(frozen=True)
class Archive:
    """A tar or zip archive, saved as ``root/<top>/downloads/<filename>`` and extracted safely.

    Attributes:
        url: where to fetch it; ``None`` for an archive the user obtains by hand (see :class:`Manual`).
        filename: the archive's file name in the downloads folder.
        into: folder (relative to the root) that receives the extracted files.
        select: a folder inside the archive whose *contents* go into ``into`` (for example
            ``MSRVTT/videos/all``); found by path, else by its last name at the shallowest depth.
            Without it the whole archive goes into ``into``.
        pick: ``(file name in the archive, path relative to the root)`` pairs; when given, only
            these files are kept (for example three JSON files out of a larger archive).
        expect: paths relative to the root that must exist (non-empty folders or files) once the
            step is done; what ``--list`` and the idempotence check look at.
        md5 / sha256 / size: published checksums of the archive (``checksum_source`` says where).
        approx_size: the archive size as its host publishes it, for display only ("13GB").
    """

    url: str | None
    filename: str
    into: str
    select: str | None = None
    pick: tuple[tuple[str, str], ...] = ()
    expect: tuple[str, ...] = ()
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    checksum_source: str = ""
    approx_size: str | None = None

    @property
    def download_path(self) -> str:
        """Where the archive is saved, relative to the root."""
        return f"{top_folder(self.into)}/downloads/{self.filename}"

    @property
    def marker_path(self) -> str:
        """The marker written once extraction finished, relative to the root."""
        return f"{top_folder(self.into)}/.lavis_state/{self.filename}.json"

    def describe(self) -> str:
        return f"{self.filename} -> {self.into}/"


@dataclass(frozen=True)
class ListedFiles:
    """Many single files whose URLs are listed in an index JSON that an earlier step fetched.

    ``index[list_key]`` is a list of objects; ``obj[url_field]`` is each file's URL and the file is
    saved as ``into/<basename of the URL>``. Used for NoCaps, whose images are listed one by one.
    """

    index: str
    list_key: str
    url_field: str
    into: str

    @property
    def marker_path(self) -> str:
        return f"{top_folder(self.into)}/.lavis_state/{PurePosixPath(self.into).name}.listed.json"

    def describe(self) -> str:
        return f"files listed in {self.index} -> {self.into}/"


@dataclass(frozen=True)
class Manual:
    """A step only a person can do (accept a licence, fill a form). The runner checks ``expect``;
    when something is missing it extracts any of ``archives`` the user dropped into the downloads
    folder, and otherwise stops with the instructions.

    ``instructions`` lines may use ``{root}`` (the data root) and ``{downloads}`` (the folder where
    dropped archives are looked for).
    """

    what: str
    url: str
    instructions: tuple[str, ...]
    expect: tuple[str, ...]
    archives: tuple[Archive, ...] = ()

    @property
    def downloads(self) -> str:
        return f"{top_folder(self.expect[0])}/downloads"

    def describe(self) -> str:
        return f"manual: {self.what}"


@dataclass(frozen=True)
class Shards:
    """Web-scale image-text pairs as webdataset shards (``into/00000.tar`` ...) made by img2dataset
    from the URL list at ``url_list``. Making them is a manual (long, network-bound) command; once
    they exist the runner verifies every shard with webdataset and records the sample counts.

    ``command`` lines may use ``{root}``, ``{url_list}`` and ``{into}`` (absolute paths).
    """

    into: str
    url_list: str
    command: tuple[str, ...]

    @property
    def marker_path(self) -> str:
        return f"{top_folder(self.into)}/.lavis_state/shards.verified.json"

    def describe(self) -> str:
        return f"webdataset shards -> {self.into}/"


Step = RemoteFile | Archive | ListedFiles | Manual | Shards


@dataclass(frozen=True)
class Part:
    """A named piece of a data set (``annotations``, ``images/train2014``, ...) of one ``kind``."""

    name: str
    kind: Kind
    steps: tuple[Step, ...]
    approx_size: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: where it comes from, what it is made of, and where each file lands.

    ``sources`` names where each URL was found (official host pages, LAVIS configs), ``layout``
    describes the folders builders read (``{"images": "coco/images", ...}``).
    """

    name: str
    title: str
    homepage: str
    parts: tuple[Part, ...]
    layout: tuple[tuple[str, str], ...] = ()
    sources: tuple[str, ...] = ()
    licence: str = ""
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())

    def kinds(self) -> list[str]:
        """The kinds of parts this data set has, in order, without repeats."""
        out: list[str] = []
        for part in self.parts:
            if part.kind not in out:
                out.append(part.kind)
        return out
