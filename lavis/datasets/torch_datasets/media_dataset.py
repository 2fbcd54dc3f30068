"""Base of the datasets that read real data sets: published annotation files, images opened lazily
in ``__getitem__``, and unreadable images skipped up to a limit.

A real data set of hundreds of thousands of images usually holds a few broken files. An item whose
image is missing or cannot be decoded is logged with its path and skipped: ``__getitem__`` returns
``None`` (every ``collater`` drops ``None`` items) and ``skipped`` counts it. Past ``max_skipped``
skipped items the dataset raises :class:`TooManySkipped`, naming the last paths, because that many
broken files means a wrong ``build_info`` or an incomplete download rather than a few bad files.
The count is shared with DataLoader worker processes (a ``multiprocessing`` value), so
``dataset.skipped`` read in the main process after an epoch includes what the workers skipped.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from PIL import UnidentifiedImageError
from torch.utils.data.dataloader import default_collate

from lavis.common.errors import LavisError
from lavis.datasets.torch_datasets.base_dataset import BaseDataset, as_list
from lavis.processors.base_processor import BaseProcessor

logger = logging.getLogger(__name__)

#: how many skipped paths a dataset remembers for its error message
LAST_PATHS = 5


class UnreadableMedia(Exception):
    """An image or video of one item is missing or cannot be decoded (the item is skipped)."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class TooManySkipped(LavisError):
    """More items were skipped for unreadable media than ``max_skipped`` allows."""


def read_json(path: str | os.PathLike) -> Any:
    """The parsed content of a JSON annotation file, with a clear error when it is missing or broken."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist; check build_info.annotations in the data set "
                                "config, or fetch the data set with python -m lavis.datasets.download")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"annotation file {path} is not valid JSON ({e}); the download may be incomplete: "
                         "delete it and fetch it again") from None


class MediaDataset(BaseDataset):
    """Records from published annotation files; media opened in ``__getitem__``; bad media skipped.

    Subclasses implement :meth:`parse` (one file's JSON -> records, in the published format) and
    :meth:`item` (one record -> the sample dict, calling :meth:`open_image`).

    Args:
        vis_processor / text_processor: as in :class:`BaseDataset`.
        vis_root: folder the media paths of the records are relative to.
        ann_paths: annotation files, read in order and concatenated.
        max_skipped: how many items with unreadable media may be skipped before it is an error.
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 max_skipped: int = 100, records: list[dict[str, Any]] | None = None):
        if isinstance(ann_paths, (str, os.PathLike)):
            ann_paths = [ann_paths]
        self.vis_root = Path(vis_root)
        self.ann_paths = [Path(p) for p in ann_paths]
        self.annotation: list[dict[str, Any]] = list(records) if records is not None else []
        for p in self.ann_paths:
            self.annotation.extend(self.parse(read_json(p), p))
        self.vis_processor: BaseProcessor = vis_processor or BaseProcessor()
        self.text_processor: BaseProcessor = text_processor or BaseProcessor()
        if int(max_skipped) < 0:
            raise ValueError(f"max_skipped must be >= 0, got {max_skipped}")
        self.max_skipped = int(max_skipped)
        # shared with DataLoader workers: a flag per item (an item counts once however often it is read)
        self._skipped = multiprocessing.Value("q", 0)
        self._skipped_flags = multiprocessing.RawArray("b", max(len(self.annotation), 1))
        self.skipped_paths: deque[str] = deque(maxlen=LAST_PATHS)

    # -- subclass hooks ---------------------------------------------------------------------------
    def parse(self, data: Any, path: Path) -> list[dict[str, Any]]:
        """Records of one annotation file; the default takes a list (or ``{"annotations": [...]}``) as is."""
        return as_list(data, path)

    def item(self, index: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- loading ----------------------------------------------------------------------------------
    @property
    def skipped(self) -> int:
        """Distinct items skipped so far for unreadable media (in this process and its DataLoader workers;
        an item skipped again in a later epoch is not counted twice)."""
        return int(self._skipped.value)

    def open_image(self, relative: str) -> Any:
        """The image at ``vis_root / relative`` as the vision processor reads it (``vis_processor.read``:
        an RGB PIL image, or a uint8 tensor for the training processors); raises
        :class:`UnreadableMedia` if it cannot be read."""
        path = self.vis_root / relative
        try:
            return self.vis_processor.read(path)
        except FileNotFoundError:
            raise UnreadableMedia(path, "file not found") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise UnreadableMedia(path, f"cannot decode ({type(e).__name__}: {e})") from None

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        """The sample of record ``index``, or ``None`` when its media is unreadable (logged and counted)."""
        try:
            return self.item(index)
        except UnreadableMedia as e:
            self._skip(index, e)
            return None

    def _skip(self, index: int, e: UnreadableMedia) -> None:
        with self._skipped.get_lock():
            if not self._skipped_flags[index]:
                self._skipped_flags[index] = 1
                self._skipped.value += 1
            count = self._skipped.value
        self.skipped_paths.append(str(e.path))
        logger.warning("skipping item with unreadable media %s (%s); %d skipped so far, limit %d",
                       e.path, e.reason, count, self.max_skipped)
        if count > self.max_skipped:
            raise TooManySkipped(
                f"{count} items of {', '.join(map(str, self.ann_paths))} had unreadable media, more than "
                f"max_skipped={self.max_skipped}; last: {', '.join(self.skipped_paths)}. Check build_info.images "
                "(is it the folder the annotation paths are relative to?) and that the download finished "
                "(python -m lavis.datasets.download --list), or raise build_info.max_skipped")

    def collater(self, samples: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
        """Drop ``None`` (skipped) items, then ``default_collate``; an all-skipped batch is ``{}``."""
        samples = [s for s in samples if s is not None]
        return default_collate(samples) if samples else {}


def retrieval_index(
    captions: Iterable[Iterable[str]], process: Callable[[str], str]
) -> tuple[list[str], dict[int, list[int]], dict[int, int]]:
    """``(texts, img2txt, txt2img)`` of a retrieval evaluation split: every processed caption in
    order, the caption indices of each image (or video) and the image of each caption."""
    texts: list[str] = []
    img2txt: dict[int, list[int]] = {}
    txt2img: dict[int, int] = {}
    for i, item_captions in enumerate(captions):
        img2txt[i] = []
        for caption in item_captions:
            txt2img[len(texts)] = i
            img2txt[i].append(len(texts))
            texts.append(process(caption))
    return texts, img2txt, txt2img


def collate_with_lists(samples: Iterable[dict[str, Any] | None], list_keys: Sequence[str],
                       flatten: Callable[[dict[str, list]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Like :meth:`MediaDataset.collater`, but ``list_keys`` (ragged lists such as answers) are kept
    as a list per sample instead of being collated; ``flatten`` may turn them into flat batch fields."""
    kept = [s for s in samples if s is not None]
    if not kept:
        return {}
    lists = {k: [s[k] for s in kept] for k in list_keys if k in kept[0]}
    batch = default_collate([{k: v for k, v in s.items() if k not in lists} for s in kept])
    batch.update(flatten(lists) if flatten else lists)
    return batch


__all__ = ["MediaDataset", "TooManySkipped", "UnreadableMedia", "as_list", "collate_with_lists", "read_json"]
