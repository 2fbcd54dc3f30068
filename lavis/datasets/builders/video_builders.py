"""Builders of video-text data sets: MSR-VTT, MSVD and DiDeMo (LAVIS's annotation files).

Videos are decoded by the vis processor (``blip_video_train`` / ``blip_video_eval``, decord) in
``__getitem__``; a missing or broken video is skipped like an unreadable image.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from lavis.common.registry import registry
from lavis.datasets.builders.real_builder import RealDatasetBuilder
from lavis.datasets.torch_datasets.video_datasets import VideoEvalDataset, VideoQADataset, VideoTextTrainDataset


class VideoBuilder(RealDatasetBuilder):
    """``build_info.format``: ``retrieval`` / ``caption`` (train: one item per caption; eval: one
    item per video, captions as attributes) or ``qa`` (question, answer and its ``ans2label`` id)."""

    split_keys = frozenset({"ans2label"})
    media_kind = "videos"

    def make_dataset(self, split: str, vis: Any, text: Any) -> Dataset:
        common = self.dataset_args(split)
        if self.format == "qa":
            return VideoQADataset(vis, text, ans2label=self.optional_path(split, "ans2label"), **common)
        if split == "train":
            return VideoTextTrainDataset(vis, text, **common)
        return VideoEvalDataset(vis, text, **common)


@registry.register_builder("msrvtt")
class MSRVTTBuilder(VideoBuilder):
    """MSR-VTT (``python -m lavis.datasets.download msrvtt``): types ``default`` (retrieval),
    ``caption`` and ``qa``."""

    download_name = "msrvtt"
    formats = ("retrieval", "caption", "qa")


@registry.register_builder("msvd")
class MSVDBuilder(VideoBuilder):
    """MSVD (``python -m lavis.datasets.download msvd``): types ``default`` (caption) and ``qa``."""

    download_name = "msvd"
    formats = ("caption", "qa")


@registry.register_builder("didemo")
class DiDeMoBuilder(VideoBuilder):
    """DiDeMo (``python -m lavis.datasets.download didemo``): retrieval."""

    download_name = "didemo"
    formats = ("retrieval",)


__all__ = ["DiDeMoBuilder", "MSRVTTBuilder", "MSVDBuilder", "VideoBuilder"]
