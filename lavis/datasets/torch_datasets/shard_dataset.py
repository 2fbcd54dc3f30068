"""Image-text pairs read from webdataset shards (``00000.tar`` ...) by random access.

Web-scale sets (CC3M, CC12M, LAION-400M) are fetched by img2dataset as webdataset shards: plain tar
files in which the members of one sample share a key (``000010042.jpg``, ``000010042.txt``,
``000010042.json``). :class:`WebShardDataset` indexes each shard once, reading only the tar
headers (the byte offset and size of every member), and then reads one sample's image and caption
in ``__getitem__`` with two seeks. It is a map-style data set, so the runners' seeded order, DDP
shares, exact resume and unreadable-image skipping apply to it unchanged.

The index of a shard is cached under the cache root (``.lavis_state/shard_index/``, one ``.npz``
per shard, loaded with ``allow_pickle=False``) and rebuilt when the shard's size or modification
time changes. It takes 29 bytes per sample in memory: name a subset of the shards (a brace pattern
such as ``laion400m/shards/{00000..00999}.tar``) to train on part of a very large set.

Reads are random across shards, which suits local disks; on network storage, copy the shards to
local disk first.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from lavis.common.io import atomic_open
from lavis.common.paths import cache_root
from lavis.datasets.download.webscale import IMAGE_EXTENSIONS, TEXT_EXTENSIONS
from lavis.datasets.torch_datasets.media_dataset import MediaDataset, UnreadableMedia
from lavis.processors.base_processor import BaseProcessor

INDEX_VERSION = 1


@dataclass
class ShardIndex:
    """The complete samples of one shard: byte offset and size of each one's image and caption."""

    image_offset: np.ndarray  # int64
    image_size: np.ndarray  # int32
    image_ext: np.ndarray  # int8, position in IMAGE_EXTENSIONS
    text_offset: np.ndarray  # int64
    text_size: np.ndarray  # int32
    incomplete: int  # samples without an image or without a caption (not indexed)

    def __len__(self) -> int:
        return len(self.image_offset)


def split_member_name(name: str) -> tuple[str, str]:
    """``(key, extension)`` of a tar member as webdataset groups them: the key is the path up to
    the first dot of the file name, the extension the rest, lower-cased (``a/b.seg.png`` ->
    ``("a/b", "seg.png")``)."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def index_shard(path: Path) -> ShardIndex:
    """Read the tar headers of ``path`` and index its samples that have an image and a caption."""
    members: dict[str, dict[str, tuple[int, int]]] = {}
    with tarfile.open(path, "r:") as tar:  # headers only: tarfile seeks past each member's data
        for m in tar:
            if m.isfile():
                key, ext = split_member_name(m.name)
                members.setdefault(key, {})[ext] = (m.offset_data, m.size)
    rows = []
    incomplete = 0
    for parts in members.values():
        image = next(((i, parts[e]) for i, e in enumerate(IMAGE_EXTENSIONS) if e in parts), None)
        text = next((parts[e] for e in TEXT_EXTENSIONS if e in parts), None)
        if image is None or text is None:
            incomplete += 1
            continue
        (code, (ioff, isize)), (toff, tsize) = image, text
        rows.append((ioff, isize, code, toff, tsize))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 5)
    return ShardIndex(arr[:, 0].copy(), arr[:, 1].astype(np.int32), arr[:, 2].astype(np.int8),
                      arr[:, 3].copy(), arr[:, 4].astype(np.int32), incomplete)


def _index_cache_path(path: Path) -> Path:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:20]
    return cache_root() / ".lavis_state" / "shard_index" / f"{path.stem}-{digest}.npz"


def load_shard_index(path: Path) -> ShardIndex:
    """The index of shard ``path``: from the cache when it was made from the same file (size and
    modification time), else built and cached (written atomically)."""
    stat = path.stat()
    stamp = np.array([INDEX_VERSION, stat.st_size, stat.st_mtime_ns], dtype=np.int64)
    cached = _index_cache_path(path)
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as z:
                if np.array_equal(z["stamp"], stamp):
                    return ShardIndex(z["image_offset"], z["image_size"], z["image_ext"], z["text_offset"],
                                      z["text_size"], int(z["incomplete"]))
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: rebuild it
    index = index_shard(path)
    with atomic_open(cached, "wb") as f:
        np.savez(f, stamp=stamp, image_offset=index.image_offset, image_size=index.image_size,
                 image_ext=index.image_ext, text_offset=index.text_offset, text_size=index.text_size,
                 incomplete=np.array(index.incomplete))
    return index


class _ShardRecords(Sequence[dict[str, Any]]):
    """The samples of all shards as a sequence, without a dict per sample in memory."""

    def __init__(self, shards: list[Path], indexes: list[ShardIndex]):
        self.shards = shards
        self.shard_of = np.concatenate([np.full(len(ix), i, dtype=np.int32) for i, ix in enumerate(indexes)]
                                       or [np.zeros(0, dtype=np.int32)])
        cat = (lambda name, dtype: np.concatenate([getattr(ix, name) for ix in indexes] or [np.zeros(0, dtype)]))
        self.image_offset, self.image_size = cat("image_offset", np.int64), cat("image_size", np.int32)
        self.image_ext = cat("image_ext", np.int8)
        self.text_offset, self.text_size = cat("text_offset", np.int64), cat("text_size", np.int32)

    def __len__(self) -> int:
        return len(self.shard_of)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return {"shard": self.shards[int(self.shard_of[i])], "image_ext": IMAGE_EXTENSIONS[int(self.image_ext[i])],
                "image": (int(self.image_offset[i]), int(self.image_size[i])),
                "text": (int(self.text_offset[i]), int(self.text_size[i]))}


class WebShardDataset(MediaDataset):
    """Image-caption pairs of webdataset shards, for training.

    Item: ``{"image": vis_processor output, "text_input": processed caption, "image_id": int}``
    (``image_id`` is the sample's position: each web pair is its own image). A sample whose image
    cannot be decoded is skipped and counted like any unreadable image (``max_skipped``).

    Args:
        shards: the ``.tar`` files, in order.
        incomplete: after indexing, how many samples had no image or no caption (not items).
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 shards: Sequence[str | os.PathLike] = (), max_skipped: int = 1000):
        super().__init__(vis_processor, text_processor, vis_root="", ann_paths=(), max_skipped=max_skipped)
        self.shards = [Path(p) for p in shards]
        self.ann_paths = self.shards  # named in the "too many skipped" error
        indexes = [load_shard_index(p) for p in self.shards]
        self.incomplete = sum(ix.incomplete for ix in indexes)
        self.annotation = _ShardRecords(self.shards, indexes)  # type: ignore[assignment]
        import multiprocessing

        self._skipped_flags = multiprocessing.RawArray("b", max(len(self.annotation), 1))
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.annotation)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own file handles
        state = self.__dict__.copy()
        state["_files"] = {}
        return state

    def _read(self, shard: int, offset: int, size: int) -> bytes:
        if self._pid != os.getpid():  # forked worker: the parent's handles share file positions
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(shard)
        if f is None:
            f = self._files[shard] = open(self.shards[shard], "rb")
        f.seek(offset)
        return f.read(size)

    def item(self, index: int) -> dict[str, Any]:
        rec: _ShardRecords = self.annotation  # type: ignore[assignment]
        shard = int(rec.shard_of[index])
        where = Path(f"{self.shards[shard]}[{index}].{IMAGE_EXTENSIONS[int(rec.image_ext[index])]}")
        try:
            data = self._read(shard, int(rec.image_offset[index]), int(rec.image_size[index]))
            caption = self._read(shard, int(rec.text_offset[index]), int(rec.text_size[index])).decode("utf-8")
            with Image.open(io.BytesIO(data)) as img:
                image = img.convert("RGB")
        except FileNotFoundError:
            raise UnreadableMedia(where, "shard file not found") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise UnreadableMedia(where, f"cannot decode ({type(e).__name__}: {e})") from None
        return {"image": self.vis_processor(image), "text_input": self.text_processor(caption.strip()),
                "image_id": index}


__all__ = ["ShardIndex", "WebShardDataset", "index_shard", "load_shard_index", "split_member_name"]
