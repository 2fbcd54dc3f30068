"""Answer normalisation and accuracy rewards."""

from __future__ import annotations

import re
from typing import Any, Sequence

from lavis.common.registry import registry

_TAGGED = re.compile(r"<answer>(.*?)</answer>", re.S)
_PUNCT = re.compile(r"[^\w\s]")


def extract_answer(text: str) -> str:
    """The text inside ``<answer>...</answer>`` when the completion has such tags, else all of it."""
    m = _TAGGED.search(text)
    return m.group(1) if m else text


def normalize_answer(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: ``" Red. "`` -> ``"red"``."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def answer_matches(prediction: str, reference: str) -> bool:
    """Whether ``prediction`` (its tagged answer, if any) equals ``reference`` after normalisation."""
    return normalize_answer(extract_answer(prediction)) == normalize_answer(reference)


@registry.register_reward("answer_accuracy")
def answer_accuracy(completions: Sequence[str], solution: Sequence[str], **_: Any) -> list[float]:
    """1.0 for each completion whose answer equals its reference ``solution``, else 0.0."""
    if len(completions) != len(solution):
        raise ValueError(f"{len(completions)} completions but {len(solution)} solutions")
    return [float(answer_matches(c, s)) for c, s in zip(completions, solution)]
