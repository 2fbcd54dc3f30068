"""Builders of captioning data sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from torch.utils.data import Dataset

from lavis.common.errors import ConfigError, UnknownNameError
from lavis.common.paths import cache_root
from lavis.common.registry import registry
from lavis.common.schema import plain_dict
from lavis.datasets.builders.base_builder import BaseDatasetBuilder
from lavis.datasets.torch_datasets.caption_datasets import CaptionDataset, CaptionEvalDataset
from lavis.datasets.synthetic.shapes import ShapesConfig, ensure_generated, generator_problems


def resolve_storage(path: str | Path) -> Path:
    """``path`` itself when absolute, else ``cache_root() / path``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else cache_root() / p


@dataclass
class SplitFiles:
    """One split's files, relative to ``build_info.storage``."""

    storage: str  # the annotation JSON
    gt: Optional[str] = None  # COCO-format ground truth, required for evaluation splits


@dataclass
class ShapesBuildInfo:
    """``build_info`` of ``shapes_caption``."""

    storage: str  # folder of the generated data; relative paths lie under the cache root
    generator: ShapesConfig = field(default_factory=ShapesConfig)
    annotations: Dict[str, SplitFiles] = field(default_factory=dict)


class GeneratedShapesBuilder(BaseDatasetBuilder):
    """Base of the builders of synthetic shapes data: ``build_info.storage`` is the folder the
    generator writes (relative paths lie under the cache root), ``build_info.generator`` its
    :class:`~lavis.datasets.synthetic.shapes.ShapesConfig` parameters."""

    @classmethod
    def check_build_info(cls, build_info: Mapping[str, Any], dotted: str) -> list[str]:
        """The generator parameters make a valid data set."""
        return generator_problems(build_info.get("generator"), f"{dotted}.generator")

    @property
    def storage(self) -> Path:
        """The folder that holds (or will hold) the generated files."""
        build_info = self.config.get("build_info")
        if build_info is None or not build_info.get("storage"):
            raise ConfigError(["build_info.storage: missing; give the folder of the generated data set "
                               "(relative paths lie under the cache root)"], source="shapes dataset config")
        return resolve_storage(str(build_info.storage))

    def generator_config(self) -> ShapesConfig:
        """The generator parameters from ``build_info.generator``."""
        return ShapesConfig.from_mapping(plain_dict(self.config.build_info.get("generator")), where="build_info.generator")

    def prepare(self) -> None:
        """Generate the data set unless ``storage`` already holds it with the same parameters.

        Safe to call from parallel processes: generation runs under a file lock next to the folder.
        """
        ensure_generated(self.storage, self.generator_config())


@registry.register_builder("shapes_caption")
class ShapesCaptionBuilder(GeneratedShapesBuilder):
    """The synthetic shapes captioning data set, generated into ``build_info.storage`` on first use.

    ``build_info.generator`` holds the :class:`~lavis.datasets.synthetic.shapes.ShapesConfig`
    parameters; a folder generated with other parameters is regenerated. Splits: ``train``
    (:class:`CaptionDataset`, one item per caption) and ``val`` / ``test``
    (:class:`CaptionEvalDataset`, one item per image, scored against ``annotations.<split>.gt``).
    """

    train_dataset_cls = CaptionDataset
    eval_dataset_cls = CaptionEvalDataset
    build_info_schema = ShapesBuildInfo

    @classmethod
    def check_build_info(cls, build_info: Mapping[str, Any], dotted: str) -> list[str]:
        """The generator parameters make a valid data set; evaluation splits name their ground truth."""
        problems = super().check_build_info(build_info, dotted)
        for split, files in (build_info.get("annotations") or {}).items():
            if split != "train" and not files.get("gt"):
                problems.append(f"{dotted}.annotations.{split}.gt: missing; evaluation splits need the COCO-format "
                                "ground truth file (e.g. captions/val_gt.json)")
        return problems

    def build_split(self, split: str) -> Dataset:
        """``CaptionDataset`` for ``train``, ``CaptionEvalDataset`` for any other split."""
        annotations = self.config.build_info.get("annotations") or {}
        if split not in annotations:
            raise UnknownNameError("split of shapes_caption", split, list(annotations))
        info = annotations[split]
        root = self.storage
        ann_path = root / str(info.storage)
        mode = "train" if split == "train" else "eval"
        vis = self.vis_processors.get(mode)
        text = self.text_processors.get(mode)
        if split == "train":
            return self.train_dataset_cls(vis, text, vis_root=root, ann_paths=[ann_path])
        gt = info.get("gt")
        if not gt:
            raise ConfigError([f"build_info.annotations.{split}.gt: missing; evaluation splits need the "
                               "COCO-format ground truth file (e.g. captions/val_gt.json)"])
        return self.eval_dataset_cls(vis, text, vis_root=root, ann_paths=[ann_path], gt_path=root / str(gt))
