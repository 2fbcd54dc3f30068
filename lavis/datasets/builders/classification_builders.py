"""Builder of ImageNet in the usual folder layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from lavis.common.registry import registry
from lavis.datasets.builders.caption_builders import resolve_storage
from lavis.datasets.builders.real_builder import RealDatasetBuilder
from lavis.datasets.torch_datasets.classification_datasets import ImageFolderDataset


@registry.register_builder("imagenet")
class ImageNetBuilder(RealDatasetBuilder):
    """ImageNet (ILSVRC2012) from ``<split>/<wnid>/<image>.JPEG`` folders: ``annotations.<split>.storage``
    is the split's folder; ``class_names`` an optional synset mapping file for readable class names.

    lavis cannot download ImageNet (the images need an account at image-net.org), so a missing
    folder is reported with where to put it rather than a download command.
    """

    download_name = None
    formats = ("folder",)
    needs_images = False
    obtain_hint = ("ImageNet cannot be downloaded by lavis: get ILSVRC2012 from https://image-net.org (account "
                   "needed) and put each split's images in <folder>/<wnid>/<image>.JPEG (val sorted into class "
                   "folders too); the synset mapping file is LOC_synset_mapping.txt of the ImageNet challenge")

    def required_files(self) -> dict[str, list[Path]]:
        """Each split's folder counts as images; the class names file as an annotation."""
        class_names = self.build_info.get("class_names")
        return {"annotations": [resolve_storage(str(class_names))] if class_names else [],
                "images": [p for split in self.splits() for p in self.annotation_paths(split)]}

    def make_dataset(self, split: str, vis: Any, text: Any) -> Dataset:
        class_names = self.build_info.get("class_names")
        return ImageFolderDataset(vis, text, vis_root=self.annotation_paths(split)[0], max_skipped=self.max_skipped,
                                  class_names=resolve_storage(str(class_names)) if class_names else None)


__all__ = ["ImageNetBuilder"]
