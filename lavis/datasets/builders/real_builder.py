"""Base of the builders of real (downloaded) data sets.

``build_info`` follows LAVIS's storage layout: every path is relative to the cache root
(``$LAVIS_CACHE_HOME`` or ``~/.cache/lavis``, where ``python -m lavis.datasets.download`` puts the
files) unless it is absolute::

    build_info:
      annotations:
        train: {storage: coco/annotations/coco_karpathy_train.json}
        val:   {storage: coco/annotations/coco_karpathy_val.json, gt: coco_gt/coco_karpathy_val_gt.json}
      images: {storage: coco/images/}
      max_skipped: 100          # items with unreadable images skipped before it is an error

:meth:`RealDatasetBuilder.prepare` checks that every file is there before anything is built (the
task builds data before the model) and otherwise raises :class:`DatasetFilesMissing`, naming the
missing files of each kind (annotations or images) and the download command that fetches them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Union

from torch.utils.data import Dataset

from lavis.common.errors import LavisError, UnknownNameError
from lavis.common.paths import cache_root
from lavis.datasets.builders.base_builder import BaseDatasetBuilder
from lavis.datasets.builders.caption_builders import resolve_storage

#: how many missing paths of one kind an error lists before it says "and N more"
LIST_MISSING = 5


@dataclass
class SplitFiles:
    """The files of one split, relative to the cache root (or absolute)."""

    storage: Union[str, List[str]]  # the annotation file(s), read in order and concatenated
    gt: Optional[str] = None  # COCO-format caption ground truth (captioning eval splits)
    answer_list: Optional[str] = None  # candidate answers of rank-mode VQA (VQA eval splits)
    image_info: Optional[str] = None  # NoCaps official image list: the domain of each image
    ans2label: Optional[str] = None  # video QA: {answer: class id}


@dataclass
class MediaFiles:
    storage: str  # folder the media paths inside the annotations are relative to


@dataclass
class RealBuildInfo:
    """``build_info`` of a real data set builder."""

    annotations: Dict[str, SplitFiles]
    images: Optional[MediaFiles] = None
    format: str = ""  # which samples to build, for builders that offer several (coco: caption, retrieval)
    max_skipped: int = 100  # items with unreadable media skipped (logged) before it is an error
    class_names: Optional[str] = None  # ImageNet: synset mapping file (``n01440764 tench, Tinca tinca``)


class DatasetFilesMissing(LavisError, FileNotFoundError):
    """Files that ``build_info`` names are not there; the message says how to fetch them."""


def _present(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


class RealDatasetBuilder(BaseDatasetBuilder):
    """Builds the splits of a downloaded data set from the files ``build_info`` names.

    Subclasses set ``formats`` (the values ``build_info.format`` may take, the first is the
    default), ``split_keys`` (the optional per-split keys they read besides ``storage``) and
    implement :meth:`make_dataset`. ``download_name`` is the name of the data set in
    ``python -m lavis.datasets.download`` (``None`` when it cannot be downloaded; then
    ``obtain_hint`` says how to get it).
    """

    build_info_schema = RealBuildInfo
    download_name: ClassVar[str | None] = None
    obtain_hint: ClassVar[str] = ""
    formats: ClassVar[tuple[str, ...]] = ("",)
    split_keys: ClassVar[frozenset[str]] = frozenset()
    #: per-split keys whose files the download fetches with the images (NoCaps image lists)
    media_split_keys: ClassVar[frozenset[str]] = frozenset()
    needs_images: ClassVar[bool] = True
    #: what ``build_info.images`` holds, as the download names that kind (``--only images`` / ``videos``)
    media_kind: ClassVar[str] = "images"

    @classmethod
    def check_build_info(cls, build_info: Mapping[str, Any], dotted: str) -> list[str]:
        """``format`` is one this builder offers, ``max_skipped`` >= 0, splits use only keys it reads."""
        problems = []
        fmt = build_info.get("format", "")
        if fmt not in cls.formats:
            problems.append(f"{dotted}.format: {fmt!r} is not one of {', '.join(repr(f) for f in cls.formats)}")
        if build_info.get("max_skipped", 0) < 0:
            problems.append(f"{dotted}.max_skipped: must be >= 0 (0: any unreadable image is an error)")
        if cls.needs_images and not build_info.get("images"):
            problems.append(f"{dotted}.images.storage: missing; give the folder the image paths of the annotations "
                            "are relative to")
        for split, files in (build_info.get("annotations") or {}).items():
            for key, value in (files or {}).items():
                if key != "storage" and value is not None and key not in cls.split_keys:
                    problems.append(f"{dotted}.annotations.{split}.{key}: not read by {cls.__name__}; it reads "
                                    f"{', '.join(['storage', *sorted(cls.split_keys)])}")
        return problems

    # -- paths --------------------------------------------------------------------------------------
    @property
    def build_info(self) -> Any:
        return self.config.build_info

    @property
    def format(self) -> str:
        return str(self.build_info.get("format") or self.formats[0])

    @property
    def max_skipped(self) -> int:
        return int(self.build_info.get("max_skipped", 100))

    def image_root(self) -> Path:
        """The folder the media paths of the annotations are relative to."""
        return resolve_storage(str(self.build_info.images.storage))

    def split_files(self, split: str) -> Any:
        annotations = self.build_info.get("annotations") or {}
        if split not in annotations:
            raise UnknownNameError(f"split of {self.download_name or type(self).__name__}", split, list(annotations))
        return annotations[split]

    def dataset_args(self, split: str) -> dict[str, Any]:
        """The keyword arguments every media data set of ``split`` takes: media root, annotation
        files and the skip limit."""
        return {"vis_root": self.image_root(), "ann_paths": self.annotation_paths(split),
                "max_skipped": self.max_skipped}

    def annotation_paths(self, split: str) -> list[Path]:
        storage = self.split_files(split).storage
        paths = [storage] if isinstance(storage, str) else list(storage)
        return [resolve_storage(str(p)) for p in paths]

    def optional_path(self, split: str, key: str) -> Path | None:
        value = self.split_files(split).get(key)
        return resolve_storage(str(value)) if value else None

    def required_files(self) -> dict[str, list[Path]]:
        """``{"annotations": [...], media_kind: [...]}``: what must exist before building."""
        annotations: list[Path] = []
        images = [self.image_root()] if self.build_info.get("images") else []
        for split in self.splits():
            annotations += self.annotation_paths(split)
            for key in sorted(self.split_keys):
                if (path := self.optional_path(split, key)) is not None:
                    (images if key in self.media_split_keys else annotations).append(path)
        return {"annotations": list(dict.fromkeys(annotations)), self.media_kind: list(dict.fromkeys(images))}

    # -- prepare and build --------------------------------------------------------------------------
    def download_command(self, only: str | None) -> str:
        cmd = f"python -m lavis.datasets.download {self.download_name}"
        return cmd + (f" --only {only}" if only else "")

    def prepare(self) -> None:
        """Raise :class:`DatasetFilesMissing` unless every file of every split is there.

        Runs before the model is built. The error names the missing paths of each missing kind and
        the command that fetches exactly that kind (``--only annotations`` / ``--only images``).
        """
        missing = {kind: [p for p in paths if not _present(p)] for kind, paths in self.required_files().items()}
        missing = {kind: paths for kind, paths in missing.items() if paths}
        if not missing:
            return
        name = self.download_name or type(self).__name__
        lines = [f"data set {name!r}: files named in build_info are missing (relative paths lie under the cache "
                 f"root {cache_root()}, set by LAVIS_CACHE_HOME):"]
        for kind, paths in missing.items():
            more = f" and {len(paths) - LIST_MISSING} more" if len(paths) > LIST_MISSING else ""
            lines.append(f"  {kind} missing: {', '.join(map(str, paths[:LIST_MISSING]))}{more}")
        if self.download_name is None:
            lines.append(f"  {self.obtain_hint}")
        else:
            only = next(iter(missing)) if len(missing) == 1 else None
            lines.append(f"  fetch {'them' if only is None else 'the ' + only} with: {self.download_command(only)}")
        raise DatasetFilesMissing("\n".join(lines))

    def build_split(self, split: str) -> Dataset:
        """The dataset of ``split``, with the train processors for ``train`` and the eval ones otherwise."""
        mode = "train" if split == "train" else "eval"
        return self.make_dataset(split, self.vis_processors.get(mode), self.text_processors.get(mode))

    def make_dataset(self, split: str, vis: Any, text: Any) -> Dataset:  # pragma: no cover - abstract
        raise NotImplementedError


__all__ = ["DatasetFilesMissing", "MediaFiles", "RealBuildInfo", "RealDatasetBuilder", "SplitFiles"]
