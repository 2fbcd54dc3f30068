"""Visual question answering datasets of the published question files (VQAv2, OK-VQA, A-OKVQA, GQA).

Each published format is turned into the same record ``{"image", "question", "question_id",
"answers": [str, ...] (empty where the split has none), "choices", "correct_choice_idx"}``:

- ``vqa`` (LAVIS's VQAv2 and OK-VQA files): ``{"question_id", "question", "answer": [str, ...] or
  str, "image": "train2014/COCO_train2014_000000458752.jpg"}``;
- ``gqa``: LAVIS's list ``{"image": "2354786.jpg", "question", "question_id", "answer": str}`` or the
  official dict ``{question_id: {"imageId": "2354786", "question", "answer", ...}}``;
- ``aokvqa``: ``{"question_id", "question", "image_id": int, "split", "choices": [4 str],
  "correct_choice_idx": int, "direct_answers": [10 str]}`` (``image`` optional: derived from
  ``split`` and ``image_id`` as ``val2017/000000299207.jpg`` when absent).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import torch

from lavis.datasets.torch_datasets.media_dataset import MediaDataset, as_list, collate_with_lists, read_json
from lavis.processors.base_processor import BaseProcessor

VQAFormat = Literal["vqa", "gqa", "aokvqa"]
VQA_FORMATS: tuple[str, ...] = ("vqa", "gqa", "aokvqa")


def _answers(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(a) for a in value]


def vqa_records(data: Any, path: Path, fmt: str) -> list[dict[str, Any]]:
    """Records of one published question file of format ``fmt`` (see the module docstring)."""
    if fmt not in VQA_FORMATS:
        raise ValueError(f"unknown VQA format {fmt!r}; one of {', '.join(VQA_FORMATS)}")
    if fmt == "gqa" and isinstance(data, dict) and not isinstance(data.get("annotations"), list):
        entries = [{"question_id": qid, **q} for qid, q in data.items()]  # the official dict layout
    else:
        entries = as_list(data, path)
    records = []
    for i, e in enumerate(entries):
        if "question" not in e:
            raise ValueError(f"entry {i} of {path} has no 'question' (keys: {sorted(e)}); not a {fmt} question file")
        image = e.get("image")
        if image is None and fmt == "gqa" and "imageId" in e:
            image = f"{e['imageId']}.jpg"
        if image is None and fmt == "aokvqa" and "image_id" in e:
            if "split" not in e:
                raise ValueError(f"entry {i} of {path} has neither 'image' nor 'split' to place image {e['image_id']}")
            image = f"{e['split']}2017/{int(e['image_id']):012d}.jpg"
        if image is None:
            raise ValueError(f"entry {i} of {path} names no image (keys: {sorted(e)})")
        answers = _answers(e.get("direct_answers") if fmt == "aokvqa" else e.get("answer"))
        records.append({"image": image, "question": e["question"], "question_id": e.get("question_id", i),
                        "answers": answers, "choices": e.get("choices"),
                        "correct_choice_idx": e.get("correct_choice_idx")})
    return records


class _VQABase(MediaDataset):
    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 max_skipped: int = 100, fmt: VQAFormat = "vqa"):
        self.fmt = fmt
        super().__init__(vis_processor, text_processor, vis_root, ann_paths, max_skipped)

    def parse(self, data: Any, path: Path) -> list[dict[str, Any]]:
        return vqa_records(data, path, self.fmt)


class VQATrainDataset(_VQABase):
    """Training questions. Item: ``{"image", "text_input": processed question, "answers": distinct
    answers, "weights": each answer's share of the annotators' answers}`` (VQA soft scores).

    The collater flattens the answers of the batch: ``answer`` (list of str), ``weight`` (float
    tensor, same length) and ``n_answers`` (long tensor ``[batch]``: how many belong to each sample).
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 max_skipped: int = 100, fmt: VQAFormat = "vqa"):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths, max_skipped, fmt)
        empty = [i for i, r in enumerate(self.annotation) if not r["answers"]]
        if empty:
            raise ValueError(f"{len(empty)} training questions of {', '.join(map(str, self.ann_paths))} have no answer "
                             f"(first entry {empty[0]}); is this a test split file?")

    def item(self, index: int) -> dict[str, Any]:
        rec = self.annotation[index]
        counts = Counter(rec["answers"])
        total = sum(counts.values())
        return {
            "image": self.vis_processor(self.open_image(rec["image"])),
            "text_input": self.text_processor(rec["question"]),
            "answers": list(counts),
            "weights": [c / total for c in counts.values()],
        }

    def collater(self, samples: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
        def flatten(lists: dict[str, list]) -> dict[str, Any]:
            return {"answer": [a for answers in lists["answers"] for a in answers],
                    "weight": torch.tensor([w for ws in lists["weights"] for w in ws], dtype=torch.float32),
                    "n_answers": torch.tensor([len(a) for a in lists["answers"]], dtype=torch.long)}
        return collate_with_lists(samples, ("answers", "weights"), flatten)


class VQAEvalDataset(_VQABase):
    """Evaluation questions. Item: ``{"image", "text_input", "question_id", "instance_id"}``, plus
    ``"answers"`` (the reference answers, where the split has them) and, for A-OKVQA,
    ``"choices"`` and ``"correct_choice_idx"`` (multiple choice). Ragged lists stay one list per
    sample in a batch.

    Args:
        answer_list: a JSON list of candidate answers; rank-mode VQA scores each question
            against it. Exposed as ``answer_list`` (``None`` without it).
    """

    def __init__(self, vis_processor: BaseProcessor | None = None, text_processor: BaseProcessor | None = None,
                 vis_root: str | os.PathLike = "", ann_paths: Sequence[str | os.PathLike] | str = (),
                 max_skipped: int = 100, fmt: VQAFormat = "vqa", answer_list: str | os.PathLike | None = None):
        super().__init__(vis_processor, text_processor, vis_root, ann_paths, max_skipped, fmt)
        self.answer_list: list[str] | None = None
        if answer_list is not None:
            answers = read_json(answer_list)
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise ValueError(f"answer list {answer_list} must hold a JSON list of answer strings")
            self.answer_list = answers

    def item(self, index: int) -> dict[str, Any]:
        rec = self.annotation[index]
        out: dict[str, Any] = {
            "image": self.vis_processor(self.open_image(rec["image"])),
            "text_input": self.text_processor(rec["question"]),
            "question_id": rec["question_id"],
            "instance_id": str(index),
        }
        if rec["answers"]:
            out["answers"] = rec["answers"]
        if rec["choices"] is not None:
            out["choices"] = list(rec["choices"])
            if rec["correct_choice_idx"] is not None:
                out["correct_choice_idx"] = int(rec["correct_choice_idx"])
        return out

    def collater(self, samples: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
        return collate_with_lists(samples, ("answers", "choices"))


__all__ = ["VQA_FORMATS", "VQAEvalDataset", "VQATrainDataset", "vqa_records"]
