"""Box reward: intersection over union of a predicted box with the reference box."""

from __future__ import annotations

import re
from typing import Any, Sequence

from lavis.common.registry import registry
from lavis.rewards.answers import extract_answer

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_BOX_ONLY = re.compile(r"\s*\[?\s*(?:-?\d+(?:\.\d+)?\s*,?\s*){4}\]?\s*")


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """The first four numbers of ``text`` as ``(x1, y1, x2, y2)`` (``"[3, 4, 20, 30]"``, spaces or
    not); ``None`` when there are fewer than four or the box is empty."""
    numbers = [float(x) for x in _NUMBER.findall(text)[:4]]
    if len(numbers) < 4:
        return None
    x1, y1, x2, y2 = numbers
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


#: IoU at which a predicted box counts as a correct answer (the usual referring-expression rule).
CORRECT_IOU = 0.5


def _box_text(reference: Any) -> str:
    return reference if isinstance(reference, str) else " ".join(str(v) for v in reference)


def _completion_iou(completion: str, ref_box: Sequence[float]) -> float:
    box = parse_box(extract_answer(completion))
    return box_iou(box, ref_box) if box is not None else 0.0


def answer_iou(completion: str, reference: Any) -> float | None:
    """IoU of the box in ``completion`` (inside ``<answer>`` tags if present) with the reference
    box (a ``[x1, y1, x2, y2]`` list, or text that is four numbers and nothing else); 0.0 when the
    completion holds no valid box, ``None`` when the reference is not a box (a word answer, or a
    sentence that happens to hold four numbers). For scoring answers of any kind; the ``iou``
    reward, asked for boxes, reads any reference text with four numbers."""
    text = _box_text(reference)
    ref_box = parse_box(text) if _BOX_ONLY.fullmatch(text) else None
    return _completion_iou(completion, ref_box) if ref_box is not None else None


@registry.register_reward("iou")
def iou_reward(completions: Sequence[str], solution: Sequence[Any], **_: Any) -> list[float]:
    """IoU of the box in each completion (inside ``<answer>`` tags if present) with its reference
    box (a ``[x1, y1, x2, y2]`` list or text); 0.0 when the completion holds no valid box."""
    out = []
    for completion, ref in zip(completions, solution):
        ref_box = parse_box(_box_text(ref))
        out.append(_completion_iou(completion, ref_box) if ref_box is not None else 0.0)
    return out
