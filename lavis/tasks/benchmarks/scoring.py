"""Scores of the vision-language benchmarks, each as its authors define it, and the rules that
read an answer out of a model's reply.

Every scorer takes per-question results (dicts with the keys named in its docstring) and returns
``(metrics, subtasks)``: ``metrics`` the benchmark's headline numbers, ``subtasks`` a table of
per-subtask numbers ``{subtask: {metric: value}}``. Percentages are on a 0-100 scale.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from typing import Any, Mapping, Sequence

Scores = tuple[dict[str, float], dict[str, dict[str, float]]]

#: MME's subtasks by category, as the MME paper and its evaluation tool group them
MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
#: the three negative-sampling settings of POPE, one question file each
POPE_SPLITS = ("random", "popular", "adversarial")


# -- answer extraction ----------------------------------------------------------------------------
def mme_yes_no(reply: str) -> str:
    """``yes``, ``no`` or ``other`` by MME's rule: the whole reply (lower case, full stops removed),
    else whichever of ``yes`` / ``no`` occurs in its first four characters."""
    text = reply.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def pope_yes_no(reply: str) -> str:
    """``yes`` or ``no`` by POPE's rule: the first sentence, commas removed, is ``no`` when one of
    its words is ``no``, ``No`` or ``not``, and ``yes`` otherwise."""
    first = reply.split(".")[0].replace(",", "")
    return "no" if {"no", "No", "not"} & set(first.split()) else "yes"


_LEAD = re.compile(r"^\s*[\(\[]?([A-Z])(?:[\)\]\.:,]|\s|$)")
_STATED = re.compile(r"(?i:answer|option|choice)\s*(?i:is|:)?\s*[\(\[]?([A-Z])\b")


def extract_choice(reply: str, options: Sequence[str], letters: Sequence[str] | None = None) -> str | None:
    """The option letter a free-form ``reply`` picks, or ``None`` when it picks none or several.

    Rules, first match wins (a letter must be one of the options' letters):

    1. the reply starts with a letter, alone or followed by ``)``, ``.``, ``:``, ``,`` or a
       space, and names no other letter: ``"B"``, ``"(B) cat"``, ``"B. cat"`` (not ``"B or C"``);
    2. it states one: ``"The answer is B"``, ``"Answer: (B)"``, ``"option B"``;
    3. exactly one of the letters stands alone in it as a capital: ``"I think B fits"``;
    4. exactly one option's text occurs in it (ignoring case): ``"a cat"`` for option ``cat``.
    """
    letters = list(letters or string.ascii_uppercase[: len(options)])
    alone = {c for c in re.findall(r"\b([A-Z])\b", reply) if c in letters}
    if (m := _LEAD.match(reply)) and m.group(1) in letters and alone <= {m.group(1)}:
        return m.group(1)
    stated = [m.group(1) for m in _STATED.finditer(reply) if m.group(1) in letters]
    if stated:
        return stated[0]
    if len(alone) == 1:
        return alone.pop()
    low = reply.lower()
    named = [letter for letter, text in zip(letters, options) if text and str(text).lower() in low]
    return named[0] if len(named) == 1 else None


def _pct(num: float, den: float) -> float:
    return 100.0 * num / den if den else 0.0


# -- MME --------------------------------------------------------------------------------------------
def score_mme(results: Sequence[Mapping[str, Any]]) -> Scores:
    """MME: per subtask ``acc`` (questions right) and ``acc_plus`` (images whose two questions are
    both right), ``score = acc + acc_plus``; ``perception`` and ``cognition`` are the sums of their
    subtasks' scores (out of 2000 and 800), ``total`` both.

    Each result: ``subtask``, ``group`` (the image), ``correct`` (bool).
    """
    by_subtask: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by_subtask[str(r["subtask"])][str(r["group"])].append(bool(r["correct"]))
    subtasks: dict[str, dict[str, float]] = {}
    for name, images in sorted(by_subtask.items()):
        answers = [a for v in images.values() for a in v]
        acc = _pct(sum(answers), len(answers))
        acc_plus = _pct(sum(all(v) for v in images.values()), len(images))
        subtasks[name] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus, "questions": len(answers)}
    perception = sum(s["score"] for n, s in subtasks.items() if n in MME_PERCEPTION)
    cognition = sum(s["score"] for n, s in subtasks.items() if n in MME_COGNITION)
    return {"perception": perception, "cognition": cognition, "total": perception + cognition}, subtasks


# -- POPE -------------------------------------------------------------------------------------------
def _binary(pairs: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and yes-ratio of (prediction, label) pairs; "yes" is positive."""
    tp = sum(p == "yes" and y == "yes" for p, y in pairs)
    fp = sum(p == "yes" and y == "no" for p, y in pairs)
    tn = sum(p == "no" and y == "no" for p, y in pairs)
    fn = sum(p == "no" and y == "yes" for p, y in pairs)
    precision = _pct(tp, tp + fp)
    recall = _pct(tp, tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": _pct(tp + tn, len(pairs)), "precision": precision, "recall": recall, "f1": f1,
            "yes_ratio": _pct(tp + fp, len(pairs)), "questions": len(pairs)}


def score_pope(results: Sequence[Mapping[str, Any]]) -> Scores:
    """POPE: accuracy, precision, recall, F1 and the ratio of ``yes`` answers per split (random,
    popular, adversarial); the headline numbers are their means over the splits.

    Each result: ``subtask`` (the split), ``prediction`` and ``answer`` (``yes`` / ``no``).
    """
    by_split: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in results:
        by_split[str(r["subtask"])].append((str(r["prediction"]), str(r["answer"]).lower()))
    subtasks = {name: _binary(pairs) for name, pairs in sorted(by_split.items())}
    keys = ("accuracy", "precision", "recall", "f1", "yes_ratio")
    metrics = {k: sum(s[k] for s in subtasks.values()) / len(subtasks) for k in keys} if subtasks else {}
    return metrics, subtasks


# -- multiple choice --------------------------------------------------------------------------------
def score_circular(results: Sequence[Mapping[str, Any]]) -> Scores:
    """MMBench's circular evaluation: a question counts as right only when every circular shift of
    its options (its copies in the TSV, numbered ``index + k * 1_000_000``) is answered right.

    ``circular_accuracy`` over questions, ``vanilla_accuracy`` over the original rows alone, both
    per ``subtask`` (MMBench's category) too. Each result: ``group`` (the original index),
    ``shift`` (``k``), ``subtask``, ``correct``.
    """
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in results:
        groups[str(r["group"])].append(r)
    per_cat: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for rows in groups.values():
        circular = all(bool(r["correct"]) for r in rows)
        first = min(rows, key=lambda r: int(r["shift"]))
        per_cat[str(first["subtask"])].append((circular, bool(first["correct"])))
    subtasks = {cat: {"circular_accuracy": _pct(sum(c for c, _ in v), len(v)),
                      "vanilla_accuracy": _pct(sum(o for _, o in v), len(v)), "questions": len(v)}
                for cat, v in sorted(per_cat.items())}
    every = [x for v in per_cat.values() for x in v]
    metrics = {"circular_accuracy": _pct(sum(c for c, _ in every), len(every)),
               "vanilla_accuracy": _pct(sum(o for _, o in every), len(every))}
    return metrics, subtasks


def score_accuracy(results: Sequence[Mapping[str, Any]], key: str = "correct") -> Scores:
    """Plain accuracy of ``results[i][key]`` (a bool or a score in [0, 1]), overall and per ``subtask``."""
    per: dict[str, list[float]] = defaultdict(list)
    for r in results:
        per[str(r.get("subtask", "all"))].append(float(r[key]))
    subtasks = {name: {"accuracy": _pct(sum(v), len(v)), "questions": len(v)} for name, v in sorted(per.items())}
    values = [x for v in per.values() for x in v]
    return {"accuracy": _pct(sum(values), len(values))}, subtasks
