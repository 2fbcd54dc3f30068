"""Builders of the web-scale image-text sets read from webdataset shards: CC3M, CC12M, LAION-400M.

``python -m lavis.datasets.download NAME`` fetches the URL list, prints the img2dataset command that
makes the shards, and once they exist verifies every shard and records the sample counts. These
builders read the verified shards (a ``train`` split only: the sets are for pre-training)::

    build_info:
      shards: {storage: cc3m/shards}   # a folder of *.tar, a brace pattern, or a list of files
      max_skipped: 1000

Shards at the download's own place must have been verified by the download command; shards
elsewhere (a path of your own) are read as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, List, Mapping, Union

from torch.utils.data import Dataset

from lavis.common.paths import cache_root
from lavis.common.registry import registry
from lavis.datasets.builders.base_builder import BaseDatasetBuilder
from lavis.datasets.builders.caption_builders import resolve_storage
from lavis.datasets.builders.real_builder import DatasetFilesMissing
from lavis.datasets.download.webscale import shard_files
from lavis.datasets.torch_datasets.shard_dataset import WebShardDataset


@dataclass
class ShardFiles:
    storage: Union[str, List[str]]  # folder of *.tar shards, a brace pattern ({00000..00099}.tar), or files


@dataclass
class WebShardBuildInfo:
    """``build_info`` of a webdataset-shard builder."""

    shards: ShardFiles
    max_skipped: int = 1000  # samples with undecodable images skipped (logged) before it is an error


def expand_shards(storage: str | list[str]) -> list[Path]:
    """The shard files ``storage`` names: every ``*.tar`` of a folder (in name order), the files of
    a brace pattern, or the listed files; relative paths lie under the cache root."""
    from braceexpand import braceexpand  # a dependency of webdataset

    out: list[Path] = []
    for item in [storage] if isinstance(storage, str) else storage:
        path = resolve_storage(item)
        if path.is_dir() or not ("{" in item or path.suffix == ".tar"):
            out += shard_files(path)
        else:
            out += [resolve_storage(p) for p in braceexpand(item)]
    return out


class WebShardBuilder(BaseDatasetBuilder):
    """Reads the webdataset shards of ``download_name`` (``build_info.shards.storage``)."""

    build_info_schema = WebShardBuildInfo
    download_name: ClassVar[str] = ""
    #: where the download command puts the shards, relative to the cache root
    download_folder: ClassVar[str] = ""

    @classmethod
    def check_build_info(cls, build_info: Mapping[str, Any], dotted: str) -> list[str]:
        if build_info.get("max_skipped", 0) < 0:
            return [f"{dotted}.max_skipped: must be >= 0 (0: any unreadable image is an error)"]
        return []

    def splits(self) -> list[str]:
        return ["train"]

    def shard_paths(self) -> list[Path]:
        return expand_shards(self.config.build_info.shards.storage)

    def prepare(self) -> None:
        """Raise :class:`DatasetFilesMissing` when a shard is missing, or when the shards at the download's
        place have not been verified by the download command; both name the command to run."""
        storage = self.config.build_info.shards.storage
        shards = self.shard_paths()
        missing = [p for p in shards if not p.is_file()]
        command = f"python -m lavis.datasets.download {self.download_name}"
        if not shards or missing:
            what = ", ".join(map(str, missing[:5])) if missing else f"no *.tar shards in {resolve_storage(str(storage))}"
            raise DatasetFilesMissing(
                f"data set {self.download_name!r}: shards missing: {what} (relative paths lie under the cache root "
                f"{cache_root()}, set by LAVIS_CACHE_HOME).\n  The download command fetches the URL list and prints "
                f"the img2dataset command that makes the shards; run it again afterwards to verify them: {command}")
        folder = cache_root() / self.download_folder
        if all(p.parent == folder for p in shards):
            marker = folder.parent / ".lavis_state" / "shards.verified.json"
            try:
                verified = {name: size for name, size in json.loads(marker.read_text(encoding="utf-8"))["shards"]}
            except (OSError, ValueError, KeyError, TypeError):
                verified = {}
            unverified = [p.name for p in shards if verified.get(p.name) != p.stat().st_size]
            if unverified:
                raise DatasetFilesMissing(
                    f"data set {self.download_name!r}: {len(unverified)} shards in {folder} have not been verified "
                    f"(first: {', '.join(unverified[:5])}); verify them (every shard is opened and its samples "
                    f"counted) with: {command} --only shards")

    def build_split(self, split: str) -> Dataset:
        return WebShardDataset(self.vis_processors.get("train"), self.text_processors.get("train"),
                               shards=self.shard_paths(), max_skipped=int(self.config.build_info.get("max_skipped", 1000)))


@registry.register_builder("cc3m")
class CC3MBuilder(WebShardBuilder):
    """Conceptual Captions 3M as webdataset shards (``python -m lavis.datasets.download cc3m``)."""

    download_name = "cc3m"
    download_folder = "cc3m/shards"


@registry.register_builder("cc12m")
class CC12MBuilder(WebShardBuilder):
    """Conceptual 12M as webdataset shards (``python -m lavis.datasets.download cc12m``)."""

    download_name = "cc12m"
    download_folder = "cc12m/shards"


@registry.register_builder("laion400m")
class LAION400MBuilder(WebShardBuilder):
    """LAION-400M as webdataset shards (``python -m lavis.datasets.download laion400m``); name a subset
    of the shards with a brace pattern to train on part of it."""

    download_name = "laion400m"
    download_folder = "laion400m/shards"


__all__ = ["CC12MBuilder", "CC3MBuilder", "LAION400MBuilder", "WebShardBuildInfo", "WebShardBuilder", "expand_shards"]
