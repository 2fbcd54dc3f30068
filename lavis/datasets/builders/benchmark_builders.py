"""Builders of the vision-language benchmarks: MME, POPE, MMBench, ScienceQA-IMG and TextVQA.

Each reads its benchmark's published files from the paths in ``build_info`` (relative paths lie
under the cache root, where ``python -m lavis.datasets.download NAME`` puts them) and builds
:class:`~lavis.datasets.builders.benchmark_data.BenchmarkDataset` splits of benchmark records,
which the ``benchmark`` task scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Union

from torch.utils.data import Dataset

from lavis.common.registry import registry
from lavis.datasets.builders import benchmark_data as data
from lavis.datasets.builders.real_builder import MediaFiles, RealDatasetBuilder


@dataclass
class BenchmarkSplit:
    """One split's files, relative to the cache root (or absolute)."""

    storage: Union[str, List[str]]  # the question file(s) or folder, in the benchmark's own format
    pid_splits: Optional[str] = None  # ScienceQA: pid_splits.json, the question ids of each split


@dataclass
class BenchmarkBuildInfo:
    """``build_info`` of a benchmark builder."""

    annotations: Dict[str, BenchmarkSplit]
    images: Optional[MediaFiles] = None  # folder the image paths of the questions are relative to


class BenchmarkBuilder(RealDatasetBuilder):
    """Builds :class:`BenchmarkDataset` splits from :meth:`read` records."""

    build_info_schema = BenchmarkBuildInfo  # type: ignore[assignment]  # its own split keys (pid_splits)
    #: the scorer of the ``benchmark`` task for this data set
    benchmark: ClassVar[str] = ""

    def read(self, split: str) -> list[dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def media_root(self, split: str) -> Path:
        return self.image_root() if self.build_info.get("images") else self.annotation_paths(split)[0].parent

    def make_dataset(self, split: str, vis: Any, text: Any) -> Dataset:
        records = self.read(split)
        if not records:
            raise data.BenchmarkFormatError(f"{self.download_name}: split {split!r} has no questions in "
                                            f"{[str(p) for p in self.annotation_paths(split)]}")
        return data.BenchmarkDataset(records, self.media_root(split), self.benchmark, vis)


@registry.register_builder("mme")
class MMEBuilder(BenchmarkBuilder):
    """MME (perception and cognition, 14 subtasks of yes/no question pairs): the release folder
    ``MME_Benchmark_release_version`` (given by the authors on request, see its download recipe)."""

    download_name = "mme"
    needs_images = False
    benchmark = "mme"

    def read(self, split: str) -> list[dict[str, Any]]:
        return data.read_mme(self.media_root(split))

    def media_root(self, split: str) -> Path:
        return self.annotation_paths(split)[0]  # image paths are relative to the release folder


@registry.register_builder("pope")
class POPEBuilder(BenchmarkBuilder):
    """POPE on COCO val2014 images: its three question files (random, popular, adversarial
    negatives) as one split, each file a subtask."""

    download_name = "pope"
    benchmark = "pope"

    def read(self, split: str) -> list[dict[str, Any]]:
        return [r for path in self.annotation_paths(split) for r in data.read_pope(path)]


@registry.register_builder("mmbench")
class MMBenchBuilder(BenchmarkBuilder):
    """MMBench (English dev set): the TSV with circular copies and base64 images."""

    download_name = "mmbench"
    needs_images = False
    benchmark = "mmbench"

    def read(self, split: str) -> list[dict[str, Any]]:
        return [r for path in self.annotation_paths(split) for r in data.read_mmbench(path)]


@registry.register_builder("scienceqa_img")
class ScienceQAImgBuilder(BenchmarkBuilder):
    """ScienceQA-IMG: the questions with an image of a ScienceQA split (``problems.json`` plus
    ``pid_splits.json``)."""

    download_name = "scienceqa"
    benchmark = "scienceqa_img"
    split_keys = frozenset({"pid_splits"})

    def read(self, split: str) -> list[dict[str, Any]]:
        pid_splits = self.optional_path(split, "pid_splits")
        if pid_splits is None:
            raise data.BenchmarkFormatError(f"scienceqa_img: build_info.annotations.{split}.pid_splits is not set; "
                                            "name ScienceQA's pid_splits.json")
        return data.read_scienceqa(self.annotation_paths(split)[0], pid_splits, split)


@registry.register_builder("textvqa")
class TextVQABuilder(BenchmarkBuilder):
    """TextVQA 0.5.1 (val by default): questions with ten answers each, on OpenImages pictures."""

    download_name = "textvqa"
    benchmark = "textvqa"

    def read(self, split: str) -> list[dict[str, Any]]:
        return [r for path in self.annotation_paths(split) for r in data.read_textvqa(path)]


__all__ = ["BenchmarkBuilder", "MMBenchBuilder", "MMEBuilder", "POPEBuilder", "ScienceQAImgBuilder",
           "TextVQABuilder"]
