"""``python -m lavis.tasks.compare``: paired sign tests between two evaluations of one split."""

import json
import math

import pytest

from lavis.tasks.compare import compare, load_results, main, sign_test


def write(path, results):
    path.write_text(json.dumps({"metrics": {}, "results": results}))
    return path


def test_sign_test_is_the_exact_two_sided_binomial_tail():
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 5) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 2**10)
    # 8 up, 3 down: 2 * P(X <= 3), X ~ Bin(11, 1/2)
    assert sign_test(8, 3) == pytest.approx(2 * sum(math.comb(11, j) for j in range(4)) / 2**11)
    assert sign_test(3, 8) == sign_test(8, 3)


def test_compare_counts_ups_and_downs_per_score_and_group():
    before = {1: {"id": 1, "correct": False, "reward": 0.25, "question_type": "count", "image_id": 7},
              2: {"id": 2, "correct": True, "reward": 0.5, "question_type": "count", "image_id": 7},
              3: {"id": 3, "correct": False, "reward": 1.0, "question_type": "color", "image_id": 8},
              4: {"id": 4, "correct": True, "reward": 0.0, "question_type": "color"}}  # only before
    after = {1: {"id": 1, "correct": True, "reward": 0.75, "question_type": "count", "image_id": 7},
             2: {"id": 2, "correct": False, "reward": 0.5, "question_type": "count", "image_id": 7},
             3: {"id": 3, "correct": True, "reward": 0.5, "question_type": "color", "image_id": 8}}
    got = {(c.key, c.group): c for c in compare(before, after, by="question_type")}
    # integers (ids, counts) are not scores; the grouping field is not compared
    assert sorted({k for k, _ in got}) == ["correct", "reward"]
    c = got[("correct", "")]
    assert (c.n, c.up, c.down) == (3, 2, 1) and c.before == pytest.approx(1 / 3) and c.after == pytest.approx(2 / 3)
    r = got[("reward", "")]
    assert (r.up, r.down) == (1, 1) and r.after == pytest.approx(1.75 / 3)
    assert (got[("correct", "question_type=count")].up, got[("correct", "question_type=count")].down) == (1, 1)
    assert got[("correct", "question_type=color")].n == 1
    with pytest.raises(ValueError, match="share no item ids"):
        compare(before, {9: {"id": 9, "correct": True}})


def test_cli_prints_one_line_per_score_and_says_what_is_wrong(tmp_path, capsys):
    a = write(tmp_path / "a.json", [{"id": i, "correct": i < 3} for i in range(10)])
    b = write(tmp_path / "b.json", [{"id": i, "correct": i < 9} for i in range(11)])
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "1 item(s) are in only one of the files" in out
    assert "correct: 0.3000 -> 0.9000  (n=10; up 6, down 0, sign test p = 0.031)" in out
    with pytest.raises(SystemExit, match="cannot read it"):
        main([str(tmp_path / "missing.json"), str(b)])
    (tmp_path / "bad.json").write_text(json.dumps({"metrics": {"x": 1}}))
    with pytest.raises(ValueError, match="no per-item results"):  # a library caller can catch it
        load_results(tmp_path / "bad.json")
    with pytest.raises(SystemExit, match="bad.json: no per-item results"):
        main([str(tmp_path / "bad.json"), str(b)])
