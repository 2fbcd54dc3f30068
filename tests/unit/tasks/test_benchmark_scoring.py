"""The benchmark scores against hand computations: MME's acc+ rule, POPE's binary metrics per
split, MMBench's circular rule, and the rules that read answers out of replies."""

from __future__ import annotations

import pytest

from lavis.tasks.benchmarks.scoring import (
    extract_choice,
    mme_yes_no,
    pope_yes_no,
    score_accuracy,
    score_circular,
    score_mme,
    score_pope,
)


def _mme(subtask: str, image: str, *correct: bool) -> list[dict]:
    return [{"subtask": subtask, "group": image, "correct": c} for c in correct]


def test_mme_scores_acc_and_acc_plus_per_subtask_and_sums_the_categories():
    results = (_mme("existence", "a", True, True) + _mme("existence", "b", True, False)  # acc 75, acc+ 50
               + _mme("artwork", "c", True, True)  # 100 + 100
               + _mme("OCR", "d", False, True) + _mme("OCR", "e", False, True)  # acc 50, acc+ 0
               + _mme("code_reasoning", "f", True, True) + _mme("code_reasoning", "g", False, False)  # 50 + 50
               + _mme("text_translation", "h", False, False))  # 0
    metrics, subtasks = score_mme(results)
    assert subtasks["existence"] == {"acc": 75.0, "acc_plus": 50.0, "score": 125.0, "questions": 4}
    assert subtasks["artwork"]["score"] == 200.0
    assert subtasks["OCR"]["acc"] == 50.0 and subtasks["OCR"]["acc_plus"] == 0.0
    assert subtasks["code_reasoning"]["score"] == 100.0 and subtasks["text_translation"]["score"] == 0.0
    assert metrics == {"perception": 125.0 + 200.0 + 50.0, "cognition": 100.0, "total": 475.0}


def test_pope_scores_each_split_and_averages_them():
    def rows(split, preds, labels):
        return [{"subtask": split, "prediction": p, "answer": y} for p, y in zip(preds, labels)]

    labels = ["yes", "no", "yes", "no"]
    results = rows("random", ["yes", "yes", "no", "no"], labels) + rows("popular", ["yes", "no", "no", "no"], labels)
    metrics, subtasks = score_pope(results)
    assert subtasks["random"] == {"accuracy": 50.0, "precision": 50.0, "recall": 50.0, "f1": 50.0,
                                  "yes_ratio": 50.0, "questions": 4}
    popular = subtasks["popular"]  # TP 1, FP 0, TN 2, FN 1
    assert (popular["accuracy"], popular["precision"], popular["recall"], popular["yes_ratio"]) == (75.0, 100.0, 50.0, 25.0)
    assert popular["f1"] == pytest.approx(200 / 3)
    assert metrics["f1"] == pytest.approx((50 + 200 / 3) / 2) and metrics["accuracy"] == 62.5


def test_pope_never_answering_yes_has_zero_precision_not_an_error():
    metrics, _ = score_pope([{"subtask": "random", "prediction": "no", "answer": "yes"}])
    assert metrics["precision"] == 0.0 and metrics["f1"] == 0.0 and metrics["yes_ratio"] == 0.0


def test_circular_evaluation_needs_every_shift_right():
    def row(group, shift, correct, cat="a"):
        return {"group": group, "shift": shift, "correct": correct, "subtask": cat}

    results = [row("0", 0, True), row("0", 1, True), row("0", 2, True),  # right under every shift
               row("1", 0, True), row("1", 1, False),  # right originally only: circular wrong
               row("2", 1, True), row("2", 0, False, )]  # wrong originally
    metrics, subtasks = score_circular(results)
    assert metrics["circular_accuracy"] == pytest.approx(100 / 3)
    assert metrics["vanilla_accuracy"] == pytest.approx(200 / 3)
    assert subtasks["a"]["questions"] == 3


def test_accuracy_takes_fractional_scores_per_subtask():
    metrics, subtasks = score_accuracy([{"subtask": "x", "correct": 1.0}, {"subtask": "x", "correct": 0.0},
                                        {"subtask": "y", "correct": 2 / 3}])
    assert subtasks["x"]["accuracy"] == 50.0
    assert metrics["accuracy"] == pytest.approx(100 * (5 / 3) / 3)


@pytest.mark.parametrize("reply, expected", [
    ("Yes", "yes"), ("no.", "no"), ("Yes, there is a dog.", "yes"), ("No, there is not", "no"),
    ("I think so", "other"), ("There is no dog", "other"),  # MME reads the first four characters only
])
def test_mme_yes_no_rule(reply, expected):
    assert mme_yes_no(reply) == expected


@pytest.mark.parametrize("reply, expected", [
    ("Yes", "yes"), ("No, there is none.", "no"), ("There is not a dog.", "no"), ("I see a dog. No cat.", "yes"),
    ("no", "no"), ("Maybe", "yes"),
])
def test_pope_yes_no_rule(reply, expected):
    assert pope_yes_no(reply) == expected


OPTIONS = ["cat", "dog", "bird"]


@pytest.mark.parametrize("reply, expected", [
    ("B", "B"), ("(C) bird", "C"), ("A. cat", "A"), ("B: dog", "B"),  # rule 1: a leading letter
    ("The answer is C.", "C"), ("Answer: (A)", "A"), ("I pick option B", "B"),  # rule 2: a stated one
    ("I think C fits best", "C"),  # rule 3: one capital letter standing alone
    ("It is a dog", "B"),  # rule 4: one option's text
    ("D", None), ("a cat or a dog", None), ("nothing fits", None), ("B or C", None),  # none, or several
])
def test_extract_choice_rules(reply, expected):
    assert extract_choice(reply, OPTIONS) == expected
