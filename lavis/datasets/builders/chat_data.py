"""Records of vision-language post-training data and the torch Dataset that serves them.

Three record formats, all JSON objects with an ``id`` and ``image`` (a path relative to the
data set's image root, or a list of paths), in the LLaVA convention where ``<image>`` in a turn's
text marks where an image goes (see :mod:`lavis.models.vlm.conversation`):

- conversation (SFT): ``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}, ...]}``
  (LLaVA-style JSON, multi-turn and multi-image);
- preference pair (DPO, reward modelling): ``{"id", "image", "prompt": [turns ending with a user
  turn], "chosen": str, "rejected": str}``;
- prompt with a reference solution (GRPO): ``{"id", "image", "prompt": [turns], "solution": str}``.

Records may carry more keys (``question_type``, ``answer``, ...); they pass through to the batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from PIL import Image
from torch.utils.data import Dataset

from lavis.processors.base_processor import BaseProcessor

#: the key every record format must have besides ``id`` and ``image``
FORMAT_KEYS = {"conversation": ("conversations",), "preference": ("prompt", "chosen", "rejected"),
               "prompt": ("prompt", "solution")}


def check_records(records: Sequence[dict[str, Any]], kind: str, where: str) -> None:
    """Raise naming the first record that lacks a key of format ``kind``."""
    need = ("id",) + FORMAT_KEYS[kind]
    for i, r in enumerate(records):
        missing = [k for k in need if k not in r]
        if missing:
            raise ValueError(f"{where}: record {i} (id {r.get('id')!r}) lacks {missing}; a {kind} record has "
                             f"{list(need)} and 'image'")


class ChatRecordsDataset(Dataset):
    """Records of one of the formats above; each item is the record with ``images`` (the loaded
    images, through ``vis_processor``) in place of ``image``.

    Args:
        records: the records (already checked with :func:`check_records`).
        vis_root: folder the image paths are relative to.
        vis_processor: applied to each PIL image; identity by default, which leaves images to the
            model's own processor.
    """

    def __init__(self, records: Sequence[dict[str, Any]], vis_root: str | os.PathLike,
                 vis_processor: BaseProcessor | None = None):
        self.annotation = list(records)
        self.vis_root = Path(vis_root)
        self.vis_processor = vis_processor or BaseProcessor()

    def __len__(self) -> int:
        return len(self.annotation)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = dict(self.annotation[index])
        paths = record.pop("image", None)
        paths = [] if paths is None else [paths] if isinstance(paths, str) else list(paths)
        images = []
        for p in paths:
            with Image.open(self.vis_root / p) as im:
                images.append(self.vis_processor(im.convert("RGB")))
        record["images"] = images
        return record

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
        """A dict of lists, one entry per sample: the model's processor tokenises conversations later."""
        keys = list(samples[0]) if samples else []
        return {k: [s.get(k) for s in samples] for k in keys}
