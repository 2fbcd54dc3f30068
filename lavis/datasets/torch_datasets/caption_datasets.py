"""Captioning datasets in the COCO-Karpathy annotation format.

- train: one entry per caption, ``{"image": relative path, "caption": str, "image_id": str}``
- val / test: one entry per image, ``{"image": ..., "caption": [str, ...], "image_id": str}``; the
  scores come from a COCO-format ground-truth file (``gt_path``) whose integer image ids are the
  ``image_id`` values this dataset returns.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from lavis.datasets.torch_datasets.base_dataset import BaseDataset
from lavis.processors.base_processor import BaseProcessor


def integer_image_id(ann: dict[str, Any]) -> int:
    """The integer COCO id of an eval annotation: ``image_id`` when it is an int, else the trailing
    digits of ``image_id`` (``"val_000042"`` -> 42) or of the image file name
    (``"val2014/COCO_val2014_000000391895.jpg"`` -> 391895)."""
    value = ann.get("image_id")
    if isinstance(value, int):
        return value
    for text in (value, Path(str(ann.get("image", ""))).stem):
        if text:
            m = re.search(r"(\d+)$", str(text))
            if m:
                return int(m.group(1))
    raise ValueError(
        f"cannot derive an integer image id from annotation {ann!r}: give an int 'image_id', or an "
        "'image_id' / image file name that ends in digits"
    )


class CaptionDataset(BaseDataset):
    """Training captions, one item per caption.

    Item: ``{"image": tensor from vis_processor (e.g. [3, H, W]), "text_input": processed caption,
    "image_id": int}``, where ``image_id`` numbers the distinct images 0, 1, ... in order of first
    appearance (several captions of one image share it).
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = ()):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths)
        self.img_ids: dict[str, int] = {}
        for ann in self.annotation:
            key = str(ann.get("image_id", ann["image"]))
            if key not in self.img_ids:
                self.img_ids[key] = len(self.img_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ann = self.annotation[index]
        caption = ann["caption"]
        if not isinstance(caption, str):
            raise TypeError(
                f"training caption entries hold one caption string each; entry {index} of "
                f"{', '.join(map(str, self.ann_paths))} holds {type(caption).__name__} (an eval-format file?)"
            )
        return {
            "image": self.vis_processor(self.load_image(ann["image"])),
            "text_input": self.text_processor(caption),
            "image_id": self.img_ids[str(ann.get("image_id", ann["image"]))],
        }


class CaptionEvalDataset(BaseDataset):
    """Evaluation images, one item per image.

    Item: ``{"image": tensor from vis_processor, "image_id": int COCO id (matches the ids in
    ``gt_path``), "instance_id": str position of the entry}``.

    Args:
        gt_path: the COCO-format caption ground truth used for scoring (``{"images", "annotations"}``);
            when it exists, every image id of the annotations must appear in it.
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 gt_path: str | os.PathLike | None = None):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths)
        self.image_ids = [integer_image_id(ann) for ann in self.annotation]
        self.gt_path = Path(gt_path) if gt_path is not None else None
        if self.gt_path is not None and self.gt_path.is_file():
            self._check_gt()

    def _check_gt(self) -> None:
        assert self.gt_path is not None  # only called when the file exists
        with open(self.gt_path, encoding="utf-8") as f:
            gt = json.load(f)
        known = {img["id"] for img in gt.get("images", [])} | {a["image_id"] for a in gt.get("annotations", [])}
        missing = [i for i in self.image_ids if i not in known]
        if missing:
            raise ValueError(
                f"{len(missing)} image ids of {', '.join(map(str, self.ann_paths))} are not in the ground truth "
                f"{self.gt_path} (first: {missing[:5]}); the annotation and GT files do not belong together"
            )

    def __getitem__(self, index: int) -> dict[str, Any]:
        ann = self.annotation[index]
        return {
            "image": self.vis_processor(self.load_image(ann["image"])),
            "image_id": self.image_ids[index],
            "instance_id": str(index),
        }


__all__ = ["CaptionDataset", "CaptionEvalDataset", "integer_image_id"]
