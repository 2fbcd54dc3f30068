"""Post-training data on the synthetic shapes images: conversations (SFT), preference pairs (DPO)
and prompts with reference solutions (GRPO), made from the shapes VQA questions.

All three read the same generated folder as ``shapes_caption`` (generated on first use) and turn
each split's ``vqa/<split>.json`` into records of :mod:`lavis.datasets.builders.chat_data`.
``question_types`` may also name ``locate``: one grounding question per image, made from the
split's ``scenes/<split>.json`` ("where is the red shape?" -> ``"[x1, y1, x2, y2]"``, the pixel box
of that shape), scored by IoU (the ``iou`` reward; IoU >= 0.5 counts as correct).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Mapping, Optional

from torch.utils.data import Dataset

from lavis.common.errors import UnknownNameError
from lavis.common.registry import registry
from lavis.datasets.builders.caption_builders import GeneratedShapesBuilder
from lavis.datasets.builders.chat_data import ChatRecordsDataset, check_records
from lavis.datasets.synthetic.shapes import ShapesConfig, question_id
from lavis.datasets.synthetic.shapes_render import Shape
from lavis.datasets.synthetic.shapes_text import GROUNDING_TYPES, NUMBER_WORDS, QUESTION_TYPES, format_box, locate_question
from lavis.datasets.torch_datasets.base_dataset import load_annotation_file
from lavis.rewards.iou import box_iou, parse_box


@dataclass
class VqaSplit:
    """One split: its shapes VQA file, relative to ``build_info.storage``."""

    storage: str


@dataclass
class ShapesChatBuildInfo:
    """``build_info`` of the shapes post-training builders."""

    storage: str  # folder of the generated shapes data; relative paths lie under the cache root
    generator: ShapesConfig = field(default_factory=ShapesConfig)
    annotations: Dict[str, VqaSplit] = field(default_factory=dict)
    # question types to keep (count, color, shape, exists, and locate: grounding); the four VQA
    # types when empty
    question_types: List[str] = field(default_factory=list)
    # at most this many records per split (the first ones); all when unset
    max_records: Optional[int] = None


def wrong_answer(qtype: str, answer: str, gen: ShapesConfig, key: int) -> str:
    """A wrong answer of the same type as ``answer`` (another colour, kind or count; the opposite
    of yes/no), picked deterministically from ``key``."""
    pools = {"color": list(gen.colors), "shape": list(gen.kinds), "count": list(NUMBER_WORDS[1:]),
             "exists": ["yes", "no"]}
    if qtype not in pools:
        raise ValueError(f"question type {qtype!r} has no answer pool; known: {sorted(pools)}")
    options = [a for a in pools[qtype] if a != answer]
    return options[key % len(options)]


def wrong_box(objects: list[dict[str, Any]], answer: str, image_size: int) -> str:
    """A wrong box for a ``locate`` question: the box of another shape of the scene or, with one
    shape, whichever of the box mirrored left-right, mirrored top-bottom or moved sideways by its
    width overlaps the right box least."""
    boxes = [format_box(Shape.from_dict(o).box(image_size)) for o in objects]
    others = [b for b in boxes if b != answer]
    if others:
        return others[0]
    right = parse_box(answer)
    assert right is not None, answer  # made by format_box
    x1, y1, x2, y2 = (int(v) for v in right)
    last, w = image_size - 1, x2 - x1
    shift = w + 1 if x2 + w + 1 <= last else -(w + 1)
    candidates = [(last - x2, y1, last - x1, y2), (x1, last - y2, x2, last - y1),
                  (max(0, x1 + shift), y1, min(last, x2 + shift), y2)]
    return format_box(min(candidates, key=lambda b: box_iou(b, (x1, y1, x2, y2))))


def user_turn(question: str) -> dict[str, str]:
    return {"from": "human", "value": f"<image>\n{question}"}


class _ShapesChatBuilder(GeneratedShapesBuilder):
    """Shared by the three builders: generate the shapes folder, read a split's VQA questions."""

    build_info_schema = ShapesChatBuildInfo
    record_kind: ClassVar[str] = ""

    @classmethod
    def check_build_info(cls, build_info: Mapping[str, Any], dotted: str) -> list[str]:
        problems = super().check_build_info(build_info, dotted)
        for q in build_info.get("question_types") or []:
            if q not in QUESTION_TYPES + GROUNDING_TYPES:
                problems.append(f"{dotted}.question_types: {q!r} is not one of "
                                f"{', '.join(QUESTION_TYPES + GROUNDING_TYPES)}")
        if build_info.get("max_records") is not None and build_info["max_records"] < 1:
            problems.append(f"{dotted}.max_records: must be at least 1, got {build_info['max_records']}")
        return problems

    def questions(self, split: str) -> list[dict[str, Any]]:
        """The split's VQA entries (and ``locate`` questions when asked for), filtered by
        ``question_types``, in image order and cut to ``max_records``."""
        annotations = self.config.build_info.get("annotations") or {}
        if split not in annotations:
            raise UnknownNameError(f"split of {type(self).__name__}", split, list(annotations))
        keep = list(self.config.build_info.get("question_types") or [])
        entries = []
        if not keep or set(keep) & set(QUESTION_TYPES):
            entries = load_annotation_file(self.storage / str(annotations[split].storage))
            entries = [e for e in entries if e["question_type"] in (keep or QUESTION_TYPES)]
        if "locate" in keep:  # question ids follow the VQA ones of the same image (k = 4)
            entries = sorted(entries + self.locate_questions(split), key=lambda e: e["question_id"])
        limit = self.config.build_info.get("max_records")
        return entries[:limit] if limit else entries

    def locate_questions(self, split: str) -> list[dict[str, Any]]:
        """One grounding question per image of ``scenes/<split>.json``, about one of its shapes
        (picked by a hash of the image id), in the VQA entries' layout."""
        scenes = load_annotation_file(self.storage / "scenes" / f"{split}.json")
        out = []
        for scene in scenes:
            objects = scene["objects"]
            obj = objects[zlib.crc32(scene["image_id"].encode()) % len(objects)]
            qtype, question, answer = locate_question(Shape.from_dict(obj), int(scene["width"]))
            index = int(scene["image_id"].rsplit("_", 1)[1])
            out.append({"question_id": question_id(split, index, 4), "image": scene["image"],
                        "image_id": scene["image_id"], "question": question, "question_type": qtype,
                        "answer": [answer], "objects": objects, "width": int(scene["width"])})
        return out

    def records(self, split: str) -> list[dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def build_split(self, split: str) -> Dataset:
        records = self.records(split)
        check_records(records, self.record_kind, f"{type(self).__name__} split {split}")
        mode = "train" if split == "train" else "eval"
        return ChatRecordsDataset(records, self.storage, self.vis_processors.get(mode))


@registry.register_builder("shapes_vqa_chat")
class ShapesVqaChatBuilder(_ShapesChatBuilder):
    """Conversations for SFT: one question and its answer per record (LLaVA-style JSON records
    with ``answer`` and ``question_type`` kept for evaluation)."""

    record_kind = "conversation"

    def records(self, split: str) -> list[dict[str, Any]]:
        return [{"id": q["question_id"], "image": q["image"], "question_type": q["question_type"],
                 "answer": q["answer"][0],
                 "conversations": [user_turn(q["question"]), {"from": "gpt", "value": q["answer"][0]}]}
                for q in self.questions(split)]


@registry.register_builder("shapes_vqa_preference")
class ShapesVqaPreferenceBuilder(_ShapesChatBuilder):
    """Preference pairs for DPO: chosen is the right answer, rejected a wrong one of the same type."""

    record_kind = "preference"

    def records(self, split: str) -> list[dict[str, Any]]:
        gen = self.generator_config()
        out = []
        for q in self.questions(split):
            answer = q["answer"][0]
            key = zlib.crc32(str(q["question_id"]).encode())
            rejected = (wrong_box(q["objects"], answer, q["width"]) if q["question_type"] == "locate"
                        else wrong_answer(q["question_type"], answer, gen, key))
            out.append({"id": q["question_id"], "image": q["image"], "question_type": q["question_type"],
                        "prompt": [user_turn(q["question"])], "chosen": answer, "rejected": rejected})
        return out


@registry.register_builder("shapes_vqa_grpo")
class ShapesVqaGrpoBuilder(_ShapesChatBuilder):
    """Prompts with reference solutions for GRPO: the question and its right answer."""

    record_kind = "prompt"

    def records(self, split: str) -> list[dict[str, Any]]:
        return [{"id": q["question_id"], "image": q["image"], "question_type": q["question_type"],
                 "prompt": [user_turn(q["question"])], "solution": q["answer"][0]}
                for q in self.questions(split)]
