"""Retrieval and VQA variants of the synthetic shapes data set: the same generated folder as
``shapes_caption`` (made on first use from ``build_info.generator``), read as a retrieval data set
(``retrieval/<split>.json``) or as VQAv2-style questions (``vqa/<split>.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

from torch.utils.data import Dataset

from lavis.common.errors import UnknownNameError
from lavis.common.registry import registry
from lavis.datasets.builders.caption_builders import GeneratedShapesBuilder
from lavis.datasets.synthetic.shapes import ShapesConfig
from lavis.datasets.synthetic.shapes_text import NUMBER_WORDS
from lavis.datasets.torch_datasets.image_text_datasets import ImageTextTrainDataset, RetrievalEvalDataset
from lavis.datasets.torch_datasets.vqa_datasets import VQAEvalDataset, VQATrainDataset


@dataclass
class ShapesSplitFile:
    """One split: its annotation JSON, relative to ``build_info.storage``."""

    storage: str


@dataclass
class ShapesTaskBuildInfo:
    """``build_info`` of ``shapes_retrieval`` and ``shapes_vqa``."""

    storage: str  # folder of the generated data; relative paths lie under the cache root
    generator: ShapesConfig = field(default_factory=ShapesConfig)
    annotations: Dict[str, ShapesSplitFile] = field(default_factory=dict)


def shapes_answer_list(cfg: ShapesConfig) -> list[str]:
    """Every answer a shapes question can have: counts, colours, kinds, yes and no."""
    counts = list(NUMBER_WORDS[cfg.min_shapes : cfg.max_shapes + 1])
    return counts + list(cfg.colors) + list(cfg.kinds) + ["yes", "no"]


class _ShapesTaskBuilder(GeneratedShapesBuilder):
    """Generation and storage as ``shapes_caption``; splits are read by :meth:`make_split`."""

    build_info_schema = ShapesTaskBuildInfo

    def build_split(self, split: str) -> Dataset:
        annotations = self.config.build_info.get("annotations") or {}
        if split not in annotations:
            raise UnknownNameError(f"split of {type(self).__name__}", split, list(annotations))
        mode = "train" if split == "train" else "eval"
        return self.make_split(split, self.storage / str(annotations[split].storage),
                               self.vis_processors.get(mode), self.text_processors.get(mode))

    def make_split(self, split: str, path: Any, vis: Any, text: Any) -> Dataset:  # pragma: no cover - abstract
        raise NotImplementedError


@registry.register_builder("shapes_retrieval")
class ShapesRetrievalBuilder(_ShapesTaskBuilder):
    """``train``: one item per caption (:class:`ImageTextTrainDataset`); other splits: a
    :class:`RetrievalEvalDataset` (items are images, the captions are attributes)."""

    def make_split(self, split: str, path: Any, vis: Any, text: Any) -> Dataset:
        if split == "train":
            return ImageTextTrainDataset(vis, text, vis_root=self.storage, ann_paths=[path])
        return RetrievalEvalDataset(vis, text, vis_root=self.storage, ann_paths=[path])


@registry.register_builder("shapes_vqa")
class ShapesVQABuilder(_ShapesTaskBuilder):
    """Questions about count, colour, kind and presence, ten (identical) human answers each:
    ``train`` is a :class:`VQATrainDataset`, other splits :class:`VQAEvalDataset` whose
    ``answer_list`` is every possible answer (:func:`shapes_answer_list`), for rank-mode VQA."""

    def make_split(self, split: str, path: Any, vis: Any, text: Any) -> Dataset:
        if split == "train":
            return VQATrainDataset(vis, text, vis_root=self.storage, ann_paths=[path], fmt="vqa")
        data = VQAEvalDataset(vis, text, vis_root=self.storage, ann_paths=[path], fmt="vqa")
        data.answer_list = shapes_answer_list(self.generator_config())
        return data


__all__ = ["ShapesRetrievalBuilder", "ShapesVQABuilder", "shapes_answer_list"]
