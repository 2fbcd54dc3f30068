"""Image-text datasets of the published caption files (COCO Karpathy, Flickr30k, NoCaps).

Published formats read as they are:

- train (COCO Karpathy, Flickr30k): one entry per caption,
  ``{"image": "train2014/COCO_train2014_000000057870.jpg", "caption": str, "image_id": "coco_57870"}``;
- val / test (COCO Karpathy, Flickr30k): one entry per image, ``{"image": ..., "caption": [str, ...]}``;
- NoCaps (BLIP's ``nocaps_{val,test}.json``): ``{"image": "val/0013ea2087020901.jpg", "img_id": 0}``;
  the official image list (``nocaps_val_4500_captions.json`` / ``nocaps_test_image_info.json``,
  ``{"images": [{"id", "file_name", "domain"}]}``) gives each image's domain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from lavis.datasets.torch_datasets.caption_datasets import integer_image_id
from lavis.datasets.torch_datasets.media_dataset import MediaDataset, read_json, retrieval_index
from lavis.processors.base_processor import BaseProcessor

#: the NoCaps domains, as the official image lists spell them
NOCAPS_DOMAINS: tuple[str, ...] = ("in-domain", "near-domain", "out-domain")


class ImageTextTrainDataset(MediaDataset):
    """One item per caption (captioning and retrieval training).

    Item: ``{"image": vis_processor output (e.g. [3, H, W]), "text_input": processed caption,
    "image_id": int}``; ``image_id`` numbers the distinct images 0, 1, ... in order of first
    appearance (the captions of one image share it, as retrieval's image-text matching needs).
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 max_skipped: int = 100):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths, max_skipped)
        self.img_ids: dict[str, int] = {}
        for i, ann in enumerate(self.annotation):
            if not isinstance(ann.get("caption"), str) or "image" not in ann:
                raise ValueError(f"entry {i} of {', '.join(map(str, self.ann_paths))} is not a training caption entry "
                                 f"({{'image': path, 'caption': str}}), got keys {sorted(ann)}; is this an eval split file?")
            self.img_ids.setdefault(str(ann.get("image_id", ann["image"])), len(self.img_ids))

    def item(self, index: int) -> dict[str, Any]:
        ann = self.annotation[index]
        return {
            "image": self.vis_processor(self.open_image(ann["image"])),
            "text_input": self.text_processor(ann["caption"]),
            "image_id": self.img_ids[str(ann.get("image_id", ann["image"]))],
        }


class ImageCaptionEvalDataset(MediaDataset):
    """One item per image, scored against a COCO-format caption ground truth (``gt_path``).

    Item: ``{"image", "image_id": int (the id the ground truth uses), "instance_id": str}``, plus
    ``"domain"`` (``in-domain`` / ``near-domain`` / ``out-domain``) when ``image_info`` is given
    (NoCaps), so scores can be split by domain.

    Args:
        gt_path: COCO-format ground truth ``{"images", "annotations"}``; ``None`` for a split
            without public references (NoCaps test: scored on the evaluation server).
        image_info: a NoCaps image list ``{"images": [{"id", "domain", ...}]}``.
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 max_skipped: int = 100, gt_path: str | os.PathLike | None = None,
                 image_info: str | os.PathLike | None = None):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths, max_skipped)
        self.image_ids = [int(ann["img_id"]) if "img_id" in ann else integer_image_id(ann) for ann in self.annotation]
        self.gt_path = Path(gt_path) if gt_path is not None else None
        self.domains: list[str] | None = None
        if image_info is not None:
            info = read_json(image_info)
            domain_of = {img["id"]: img["domain"] for img in info.get("images", []) if "domain" in img}
            missing = [i for i in self.image_ids if i not in domain_of]
            if missing:
                raise ValueError(f"{len(missing)} image ids of {', '.join(map(str, self.ann_paths))} have no domain in "
                                 f"{image_info} (first: {missing[:5]}); the two files do not belong together")
            self.domains = [domain_of[i] for i in self.image_ids]
        if self.gt_path is not None:
            self._check_gt()

    def _check_gt(self) -> None:
        assert self.gt_path is not None  # only called when a ground-truth file is given
        with open(self.gt_path, encoding="utf-8") as f:
            gt = json.load(f)
        known = {img["id"] for img in gt.get("images", [])} | {a["image_id"] for a in gt.get("annotations", [])}
        missing = [i for i in self.image_ids if i not in known]
        if missing:
            raise ValueError(f"{len(missing)} image ids of {', '.join(map(str, self.ann_paths))} are not in the ground "
                             f"truth {self.gt_path} (first: {missing[:5]}); the annotation and GT files do not belong together")

    def item(self, index: int) -> dict[str, Any]:
        ann = self.annotation[index]
        out = {"image": self.vis_processor(self.open_image(ann["image"])), "image_id": self.image_ids[index],
               "instance_id": str(index)}
        if self.domains is not None:
            out["domain"] = self.domains[index]
        return out


class RetrievalEvalDataset(MediaDataset):
    """Image-text retrieval evaluation: one item per image; the captions are attributes.

    ``text`` holds every processed caption, ``img2txt[i]`` the caption indices of image ``i`` and
    ``txt2img[t]`` the image of caption ``t`` (the ground truth of recall@k both ways).
    Item: ``{"image", "index": image position}``.
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 max_skipped: int = 100):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths, max_skipped)
        for i, ann in enumerate(self.annotation):
            if not isinstance(ann.get("caption"), list):
                raise ValueError(f"entry {i} of {', '.join(map(str, self.ann_paths))} is not an eval entry "
                                 "({'image': path, 'caption': [str, ...]}); is this a training split file?")
        self.text, self.img2txt, self.txt2img = retrieval_index((a["caption"] for a in self.annotation),
                                                                self.text_processor)

    def item(self, index: int) -> dict[str, Any]:
        return {"image": self.vis_processor(self.open_image(self.annotation[index]["image"])), "index": index}


__all__ = ["NOCAPS_DOMAINS", "ImageCaptionEvalDataset", "ImageTextTrainDataset", "RetrievalEvalDataset"]
