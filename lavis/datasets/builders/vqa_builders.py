"""Builders of visual question answering data sets: VQAv2, OK-VQA, A-OKVQA and GQA."""

from __future__ import annotations

from typing import Any, ClassVar

from torch.utils.data import Dataset

from lavis.common.registry import registry
from lavis.datasets.builders.real_builder import RealDatasetBuilder
from lavis.datasets.torch_datasets.vqa_datasets import VQAEvalDataset, VQATrainDataset


class VQABuilder(RealDatasetBuilder):
    """``train``: :class:`VQATrainDataset` (answers with soft-score weights); other splits:
    :class:`VQAEvalDataset`, with the split's ``answer_list`` (rank-mode candidates) when given."""

    question_format: ClassVar[str] = "vqa"
    split_keys = frozenset({"answer_list"})

    def make_dataset(self, split: str, vis: Any, text: Any) -> Dataset:
        common = {**self.dataset_args(split), "fmt": self.question_format}
        if split == "train":
            return VQATrainDataset(vis, text, **common)
        return VQAEvalDataset(vis, text, answer_list=self.optional_path(split, "answer_list"), **common)


@registry.register_builder("vqav2")
class VQAv2Builder(VQABuilder):
    """VQAv2 on COCO 2014 images, LAVIS's question files (``python -m lavis.datasets.download vqav2``):
    train on ``vqa_train.json`` + ``vqa_val.json`` (as LAVIS does), ``val`` = ``vqa_val_eval.json``,
    ``test`` = ``vqa_test.json`` (test-dev/std questions, no answers); eval splits carry ``answer_list.json``."""

    download_name = "vqav2"
    formats = ("vqa",)


@registry.register_builder("okvqa")
class OKVQABuilder(VQABuilder):
    """OK-VQA on COCO 2014 images (``python -m lavis.datasets.download okvqa``); same format as VQAv2."""

    download_name = "okvqa"
    formats = ("vqa",)


@registry.register_builder("aokvqa")
class AOKVQABuilder(VQABuilder):
    """A-OKVQA on COCO 2017 images (``python -m lavis.datasets.download aokvqa``): direct answers
    (``answers``, with weights for training) and multiple choice (``choices``, ``correct_choice_idx``)."""

    download_name = "aokvqa"
    formats = ("aokvqa",)
    question_format = "aokvqa"


@registry.register_builder("gqa")
class GQABuilder(VQABuilder):
    """GQA balanced questions (``python -m lavis.datasets.download gqa``): train, val and testdev;
    one answer per question; the official dict layout and LAVIS's list layout are both read."""

    download_name = "gqa"
    formats = ("gqa",)
    question_format = "gqa"


__all__ = ["AOKVQABuilder", "GQABuilder", "OKVQABuilder", "VQABuilder", "VQAv2Builder"]
