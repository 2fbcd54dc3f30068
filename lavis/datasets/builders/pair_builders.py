"""Builders of statement-about-images data sets: NLVR2 (image pairs) and SNLI-VE (entailment)."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from lavis.common.registry import registry
from lavis.datasets.builders.real_builder import RealDatasetBuilder
from lavis.datasets.torch_datasets.pair_datasets import NLVR2Dataset, SNLIVEDataset


@registry.register_builder("nlvr2")
class NLVR2Builder(RealDatasetBuilder):
    """NLVR2 (``python -m lavis.datasets.download nlvr2``; images through the NLVR2 request form):
    train, dev, test; two images per sample."""

    download_name = "nlvr2"
    formats = ("nlvr2",)

    def make_dataset(self, split: str, vis: Any, text: Any) -> Dataset:
        return NLVR2Dataset(vis, text, vis_root=self.image_root(), ann_paths=self.annotation_paths(split),
                            max_skipped=self.max_skipped)


@registry.register_builder("snli_ve")
class SNLIVEBuilder(RealDatasetBuilder):
    """SNLI-VE on Flickr30k images (``python -m lavis.datasets.download snli_ve``): train, dev, test;
    labels 0 contradiction, 1 neutral, 2 entailment."""

    download_name = "snli_ve"
    formats = ("snli_ve",)

    def make_dataset(self, split: str, vis: Any, text: Any) -> Dataset:
        return SNLIVEDataset(vis, text, vis_root=self.image_root(), ann_paths=self.annotation_paths(split),
                             max_skipped=self.max_skipped)


__all__ = ["NLVR2Builder", "SNLIVEBuilder"]
