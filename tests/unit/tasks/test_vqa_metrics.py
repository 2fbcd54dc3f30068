"""VQA answer normalisation (each rule) and the VQA accuracy, against hand-computed cases."""

from __future__ import annotations

import pytest

from lavis.tasks.metrics.errors import MetricError
from lavis.tasks.metrics.vqa import CONTRACTIONS, exact_match, normalize_answer, vqa_accuracy


@pytest.mark.parametrize(
    "raw, expected",
    [
        # white space: newlines and tabs become spaces, the ends are stripped, runs collapse
        ("\tred\ncar  ", "red car"),
        # a mark without a space next to it becomes a space
        ("black/white", "black white"),
        ("left-hand", "left hand"),
        ("(red)", "red"),
        # a mark next to a space is deleted (so no double word break appears)
        ("hi, there", "hi there"),
        ("x - y", "x y"),
        ("yes !", "yes"),
        # a digit-comma-digit group anywhere deletes every mark instead of spacing it
        ("1,000", "1000"),
        ("1,2-3", "123"),
        # periods: deleted unless a digit follows
        ("yes.", "yes"),
        ("e.g.", "eg"),
        ("3.5", "3.5"),
        ("it... is", "it is"),
        # lower case
        ("YES", "yes"),
        # number words become digits
        ("two", "2"),
        ("none", "0"),
        ("zero", "0"),
        ("Ten apples", "10 apples"),
        ("eleven", "eleven"),
        # articles are dropped
        ("a dog", "dog"),
        ("an apple the day", "apple day"),
        ("theatre", "theatre"),
        # contractions get their apostrophes back; apostrophed words stay
        ("dont", "don't"),
        ("couldnt've", "couldn't've"),
        ("couldn'tve", "couldn't've"),
        ("oclock", "o'clock"),
        ("twas", "'twas"),
        ("don't", "don't"),
        # the rules together
        ("Two dogs.", "2 dogs"),
        ("What's the answer?", "what's answer"),
    ],
)
def test_normalize_answer_rules(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_contraction_table_restores_one_missing_apostrophe() -> None:
    assert CONTRACTIONS["wouldnt"] == "wouldn't"
    assert CONTRACTIONS["yall'd've"] == CONTRACTIONS["y'alld've"] == CONTRACTIONS["y'all'dve"] == "y'all'd've"
    # words that are English without an apostrophe are left alone
    for word in ("its", "well", "were", "shed", "wed", "id", "cant've"):
        assert word not in CONTRACTIONS


@pytest.mark.parametrize(
    "n_match, expected",
    [
        # 10 answers, m of them match: leaving out a matching one leaves m-1, else m (of 9)
        (0, 0.0),
        (1, (9 * (1 / 3) + 1 * 0) / 10),  # 0.3
        (2, (8 * (2 / 3) + 2 * (1 / 3)) / 10),  # 0.6
        (3, (7 * 1 + 3 * (2 / 3)) / 10),  # 0.9
        (4, 1.0),
        (10, 1.0),
    ],
)
def test_vqa_accuracy_leave_one_out(n_match: int, expected: float) -> None:
    answers = ["cat"] * n_match + ["dog"] * (10 - n_match)
    assert vqa_accuracy("cat", answers) == pytest.approx(expected)


def test_vqa_accuracy_normalises_both_sides() -> None:
    assert vqa_accuracy("Two.", ["2", "two", "2 ", "3"]) == pytest.approx((1 * 1 + 3 * (2 / 3)) / 4)
    assert vqa_accuracy("the cat", ["Cat"] * 10) == 1.0


def test_vqa_accuracy_few_answers() -> None:
    # 2 answers: each subset is the other answer alone
    assert vqa_accuracy("cat", ["cat", "dog"]) == pytest.approx((0 + 1 / 3) / 2)
    # one answer: exact match
    assert vqa_accuracy("cat", ["Cat"]) == 1.0
    assert vqa_accuracy("dog", ["cat"]) == 0.0


@pytest.mark.parametrize("bad", [[], "cat"])
def test_vqa_accuracy_rejects_missing_answers(bad) -> None:
    with pytest.raises(MetricError, match="list of reference answers"):
        vqa_accuracy("cat", bad)


def test_exact_match() -> None:
    assert exact_match("The Left.", "left") == 1.0
    assert exact_match("left side", "left") == 0.0
