"""Builders of image-text data sets: COCO (Karpathy splits), Flickr30k and NoCaps."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from lavis.common.registry import registry
from lavis.datasets.builders.real_builder import RealDatasetBuilder
from lavis.datasets.torch_datasets.image_text_datasets import (
    ImageCaptionEvalDataset,
    ImageTextTrainDataset,
    RetrievalEvalDataset,
)


@registry.register_builder("coco")
class COCOBuilder(RealDatasetBuilder):
    """COCO 2014 images with the Karpathy train/val/test files (``python -m lavis.datasets.download coco``).

    ``build_info.format``: ``caption`` (type ``default``): train items per caption, val/test items
    per image scored against ``gt`` (``coco_gt/coco_karpathy_{val,test}_gt.json``);
    ``retrieval`` (type ``retrieval``): train items per caption, val/test
    :class:`RetrievalEvalDataset` (images as items, captions as attributes).
    """

    download_name = "coco"
    formats = ("caption", "retrieval")
    split_keys = frozenset({"gt"})

    def make_dataset(self, split: str, vis: Any, text: Any) -> Dataset:
        common = self.dataset_args(split)
        if split == "train":
            return ImageTextTrainDataset(vis, text, **common)
        if self.format == "retrieval":
            return RetrievalEvalDataset(vis, text, **common)
        return ImageCaptionEvalDataset(vis, text, gt_path=self.optional_path(split, "gt"), **common)


@registry.register_builder("flickr30k")
class Flickr30kBuilder(RealDatasetBuilder):
    """Flickr30k with the Karpathy splits, for retrieval (``python -m lavis.datasets.download flickr30k``;
    the images come through the Flickr30k licence form). Train items per caption; val/test
    :class:`RetrievalEvalDataset`."""

    download_name = "flickr30k"
    formats = ("retrieval",)

    def make_dataset(self, split: str, vis: Any, text: Any) -> Dataset:
        common = self.dataset_args(split)
        if split == "train":
            return ImageTextTrainDataset(vis, text, **common)
        return RetrievalEvalDataset(vis, text, **common)


@registry.register_builder("nocaps")
class NoCapsBuilder(RealDatasetBuilder):
    """NoCaps validation and test, evaluation only (``python -m lavis.datasets.download nocaps``).

    Items carry the image's ``domain`` (in-, near-, out-domain) from the official image list
    (``image_info``). ``val`` is scored against the official captions (``gt``: the same official
    file, which is COCO-format); ``test`` has no public references (scored by the NoCaps server).
    The official lists come with the images part of the download.
    """

    download_name = "nocaps"
    formats = ("caption",)
    split_keys = frozenset({"gt", "image_info"})
    media_split_keys = frozenset({"gt", "image_info"})

    def make_dataset(self, split: str, vis: Any, text: Any) -> Dataset:
        return ImageCaptionEvalDataset(vis, text, vis_root=self.image_root(), ann_paths=self.annotation_paths(split),
                                       max_skipped=self.max_skipped, gt_path=self.optional_path(split, "gt"),
                                       image_info=self.optional_path(split, "image_info"))


__all__ = ["COCOBuilder", "Flickr30kBuilder", "NoCapsBuilder"]
