"""The registered reward functions."""

from __future__ import annotations

import pytest

from lavis.common.registry import registry


def test_registered_rewards():
    assert {"answer_accuracy", "format", "iou"} <= set(registry.list_rewards())


def test_answer_accuracy_normalises_and_reads_tags():
    acc = registry.get_reward("answer_accuracy")
    assert acc(["Red.", "<answer> blue </answer>", "a red", "two"], ["red", "blue", "red", "three"]) == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="2 completions but 1 solutions"):
        acc(["a", "b"], ["a"])


def test_format_reward():
    fmt = registry.get_reward("format")
    got = fmt(["<answer> red </answer>", "<think> the circle </think> <answer>red</answer>", "red",
               "<answer></answer>", "<answer> red </answer> more"])
    assert got == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_iou_reward():
    iou = registry.get_reward("iou")
    got = iou(["[0, 0, 10, 10]", "<answer> 5 0 15 10 </answer>", "no box", "[10, 10, 5, 5]"],
              [[0, 0, 10, 10], "[0, 0, 10, 10]", [0, 0, 1, 1], [0, 0, 10, 10]])
    assert got == pytest.approx([1.0, 50 / 150, 0.0, 0.0])


def test_answer_iou_treats_only_a_bare_box_as_a_box_reference():
    from lavis.rewards.iou import answer_iou

    assert answer_iou("[ 0 , 0 , 10 , 10 ]", "[0, 0, 10, 10]") == 1.0
    assert answer_iou("<answer>[0, 0, 10, 5]</answer>", [0, 0, 10, 10]) == 0.5
    assert answer_iou("red", "[0, 0, 10, 10]") == 0.0  # a box was asked for
    assert answer_iou("red", "red") is None  # a word answer
    assert answer_iou("1990", "the years 1990, 1995, 2000 and 2005") is None  # four numbers in a sentence
    # the iou reward is asked for boxes: it reads a reference box written in words too
    assert registry.get_reward("iou")(["[0, 0, 10, 10]"], ["box 0 0 10 10"]) == [1.0]
