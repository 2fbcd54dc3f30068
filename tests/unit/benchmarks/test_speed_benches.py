"""The benchmark scripts' own logic: where ``benchmarks/compile.py`` says compilation pays back, and
that the retrieval benchmark's split and evaluation are what its row claims (ITM re-rank of every
candidate, recalls of the whole split)."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

import compile as compile_bench  # noqa: E402
import retrieval_bench  # noqa: E402
import speed_harness as H  # noqa: E402


def test_break_even_counts_the_calls_until_compilation_is_paid_back():
    eager = {"first_s": 5.0, "steady_s": 3.0}
    # 100 s more on the first call, 1 s less per call after it: even after 101 calls
    assert compile_bench.break_even(eager, {"first_s": 105.0, "steady_s": 2.0}) == pytest.approx(101.0)
    assert compile_bench.break_even(eager, {"first_s": 4.0, "steady_s": 2.0}) == 1.0  # faster from the start
    assert compile_bench.break_even(eager, {"first_s": 105.0, "steady_s": 3.0}) is None  # never
    assert compile_bench.break_even(eager, {"first_s": 105.0, "steady_s": 3.5}) is None


def test_the_retrieval_split_links_five_captions_to_each_image():
    split = retrieval_bench.Split(4, 16)
    assert len(split) == 4 and len(split.text) == 20 and split[3]["image"].shape == (3, 16, 16)
    assert split.img2txt[2] == [10, 11, 12, 13, 14]
    assert all(split.txt2img[t] == i for i, ts in split.img2txt.items() for t in ts)


@pytest.mark.usefixtures("one_thread")
def test_our_retrieval_bench_scores_the_whole_split(monkeypatch):
    monkeypatch.setitem(retrieval_bench.SETTINGS, "retrieval_tiny",
                        {**retrieval_bench.SETTINGS["retrieval_tiny"], "images": 10, "batch": 4})
    label = retrieval_bench.label("retrieval_tiny", H.SIZES["quick"])
    assert label == "retrieval tiny 64 px, 10 x 50, ITM top-16"
    fn = retrieval_bench.ours("retrieval_tiny", H.SIZES["quick"], "assets/tokenizers/tiny", nullcontext)
    metrics = fn()
    # 10 images (fewer than k = 16): every text's image is among its 10 re-ranked candidates
    assert metrics["img_r10"] == 100.0 and metrics["r_mean"] == metrics["agg_metrics"]
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10"))
    assert metrics["txt_r1"] <= metrics["txt_r5"] <= metrics["txt_r10"]
    assert metrics["img_r1"] <= metrics["img_r5"] <= metrics["img_r10"]
