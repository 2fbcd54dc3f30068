"""Output-format reward: the completion is exactly one ``<answer>...</answer>`` block."""

from __future__ import annotations

import re
from typing import Any, Sequence

from lavis.common.registry import registry

_FORMAT = re.compile(r"^\s*(<think>.*?</think>\s*)?<answer>\s*\S.*?</answer>\s*$", re.S)


@registry.register_reward("format")
def format_reward(completions: Sequence[str], **_: Any) -> list[float]:
    """1.0 for a completion of the form ``[<think> ... </think>] <answer> ... </answer>`` (a
    non-empty answer, nothing after it), else 0.0."""
    return [1.0 if _FORMAT.match(c) else 0.0 for c in completions]
