"""Captioning task and COCO caption metrics: values, id checks, result files, config keys, ranks."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path
from typing import Any

import pytest
import torch

from lavis.common.config import Config, run_schema_for, validate
from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.tasks import setup_task
from lavis.tasks.captioning import CaptionTask
from lavis.tasks.metrics import JavaNotFoundError, MetricError, score_captions
from lavis.tasks.metrics.java import MeteorServer, ptb_tokenize

FAST = ["BLEU", "ROUGE_L", "CIDEr"]  # no METEOR: its Java start-up is paid once, in the tests that need it

COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star"]
PLACES = ["left", "right", "top", "bottom", "center"]
SIZES = ["small", "large"]
TEMPLATES = [
    "A {size} {color} {shape} on the {place}.",
    "There is a {color} {shape} at the {place} of the image.",
    "{size} {shape} colored {color}",
    "The picture shows one {color} {shape} near the {place}.",
    "a {shape} that is {color} and {size}",
]


def make_gt(n: int = 24, seed: int = 0) -> dict:
    """A COCO caption file of ``n`` images of one coloured shape, five captions each."""
    rng = random.Random(seed)
    images, anns = [], []
    for i in range(n):
        attrs = dict(color=rng.choice(COLORS), shape=rng.choice(SHAPES), place=rng.choice(PLACES), size=rng.choice(SIZES))
        images.append({"id": 100 + i})
        for t in TEMPLATES:
            anns.append({"image_id": 100 + i, "id": len(anns), "caption": t.format(**attrs)})
    return {"images": images, "annotations": anns}


def first_captions(gt: dict) -> dict[int, str]:
    out: dict[int, str] = {}
    for a in gt["annotations"]:
        out.setdefault(a["image_id"], a["caption"])
    return out


@pytest.fixture
def gt_file(tmp_path: Path) -> tuple[dict, Path]:
    gt = make_gt()
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return gt, path


def run_cfg(tmp_path: Path, **kw) -> Any:
    """A typed captioning run section, as ``Config.run`` gives it."""
    return run_schema_for("captioning")(task="captioning", output_dir=str(tmp_path / "out"), **kw)


# ---------------------------------------------------------------------------------------------
# metric values
# ---------------------------------------------------------------------------------------------
def test_perfect_predictions_beat_shuffled_and_poor_ones(gt_file):
    gt, path = gt_file
    firsts = first_captions(gt)
    ids = list(firsts)
    perfect = [{"image_id": i, "caption": firsts[i]} for i in ids]
    shuffled = [{"image_id": i, "caption": firsts[ids[(k + 7) % len(ids)]]} for k, i in enumerate(ids)]
    poor = [{"image_id": i, "caption": "an image"} for i in ids]

    p, s, q = (score_captions(r, path, FAST) for r in (perfect, shuffled, poor))
    assert set(p) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"}
    assert p["Bleu_4"] > 0.99 and p["Bleu_1"] > 0.99 and p["ROUGE_L"] > 0.99
    assert p["CIDEr"] > 2.0
    assert p["CIDEr"] > 3 * s["CIDEr"] and p["Bleu_4"] > 2 * s["Bleu_4"]
    assert s["CIDEr"] > q["CIDEr"]
    assert q["Bleu_4"] < 0.01 and q["CIDEr"] < 0.1


def _coco_reference(gts: dict[int, list[str]], res: dict[int, str], meteor) -> dict[str, float]:
    """The metrics computed by calling pycocoevalcap's classes directly, as COCOEvalCap does."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    g = tok.tokenize({i: [{"caption": c} for c in caps] for i, caps in gts.items()})
    r = tok.tokenize({i: [{"caption": c}] for i, c in res.items()})
    bleu, _ = Bleu(4).compute_score(g, r, verbose=0)
    out = {f"Bleu_{n + 1}": b for n, b in enumerate(bleu)}
    out["METEOR"] = meteor.compute_score(g, r)[0]
    out["ROUGE_L"] = Rouge().compute_score(g, r)[0]
    out["CIDEr"] = Cider().compute_score(g, r)[0]
    return {k: float(v) for k, v in out.items()}


def test_values_agree_with_pycocoevalcap_on_a_hand_made_example():
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()  # starts loading now, alongside ours
    gts = {
        1: ["A man riding a horse on the beach.", "A person rides a brown horse near the sea.", "Horse and rider at the shore"],
        2: ["Two dogs play with a red ball.", "A pair of dogs chasing a ball in the grass."],
        3: ["A plate of pasta with tomato sauce.", "Spaghetti on a white plate!", "A dish of noodles, with sauce."],
        4: ["A red bus drives down a city street.", "A double-decker bus in traffic."],
    }
    res = {1: "a man rides a horse on a beach", 2: "two dogs playing with a ball", 3: "a plate of food", 4: "a bus on the street"}
    gt = {"images": [{"id": i} for i in gts],
          "annotations": [{"image_id": i, "id": 10 * i + k, "caption": c} for i, caps in gts.items() for k, c in enumerate(caps)]}
    ours = score_captions([{"image_id": i, "caption": c} for i, c in res.items()], gt)
    reference = _coco_reference(gts, res, meteor)
    meteor.meteor_p.stdout.close()
    meteor.meteor_p.stderr.close()
    del meteor  # pycocoevalcap's Meteor ends its process when deleted
    assert list(ours) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]
    assert ours == pytest.approx(reference, abs=1e-9)
    assert 0 < ours["METEOR"] < 1 and 0 < ours["CIDEr"]


def test_odd_captions_stay_aligned_and_score():
    odd = ["", "   ", "line\rbreak", "para\u2028graph", "nel\x85char", "pipes ||| inside", "emoji 🐱 cat", "tab\tand\x00nul",
           "ünïcödé “quotes” — dash", "...", "a " * 300]
    tokens = ptb_tokenize(odd + ["the last caption ."])
    assert len(tokens) == len(odd) + 1
    assert tokens[0] == "" and tokens[1] == ""
    assert tokens[2] == "line break" and tokens[3] == "para graph" and tokens[4] == "nel char"
    assert tokens[-1] == "the last caption"  # nothing before it spilled onto other lines

    gt = {"images": [{"id": i} for i in range(len(odd))],
          "annotations": [{"image_id": i, "id": i, "caption": c} for i, c in enumerate(odd)]
          + [{"image_id": i, "id": 100 + i, "caption": "a shape on a canvas"} for i in range(len(odd))]}
    results = [{"image_id": i, "caption": c} for i, c in enumerate(reversed(odd))]
    scores = score_captions(results, gt)  # METEOR included: must neither hang nor misalign
    assert set(scores) >= {"METEOR", "CIDEr", "Bleu_4"}
    assert all(v == v and v >= 0 for v in scores.values())  # no NaN


# ---------------------------------------------------------------------------------------------
# id checks and bad input
# ---------------------------------------------------------------------------------------------
def test_missing_and_extra_image_ids_are_named(gt_file):
    gt, path = gt_file
    firsts = first_captions(gt)
    results = [{"image_id": i, "caption": c} for i, c in firsts.items() if i not in (101, 102, 103)]
    results += [{"image_id": 9001, "caption": "x"}, {"image_id": 9002, "caption": "y"}]
    with pytest.raises(MetricError) as e:
        score_captions(results, path, FAST)
    msg = str(e.value)
    assert "2 result image id(s) are not in" in msg and "9001" in msg and "9002" in msg
    assert "3 image(s)" in msg and "101" in msg and "103" in msg and str(path) in msg


def test_many_missing_ids_show_the_first_few(gt_file):
    gt, path = gt_file
    with pytest.raises(MetricError, match=r"23 image\(s\) .* have no result: \[101, .*, \.\.\.\]"):
        score_captions([{"image_id": 100, "caption": "a red circle"}], path, FAST)


def test_string_ids_against_int_ids_get_a_hint(gt_file):
    gt, path = gt_file
    results = [{"image_id": str(i), "caption": c} for i, c in first_captions(gt).items()]
    with pytest.raises(MetricError, match="differ only in type"):
        score_captions(results, path, FAST)


def test_bad_inputs_name_the_problem(tmp_path, gt_file):
    gt, path = gt_file
    with pytest.raises(MetricError, match="does not exist"):
        score_captions([], tmp_path / "nope.json")
    with pytest.raises(MetricError, match="more than one result caption: \\[100\\]"):
        score_captions([{"image_id": 100, "caption": "a"}, {"image_id": 100, "caption": "b"}], path, FAST)
    with pytest.raises(MetricError, match="string 'caption'"):
        score_captions([{"image_id": 100, "caption": None}], path, FAST)
    with pytest.raises(MetricError, match="did you mean 'BLEU'"):
        score_captions([], path, ["BLUE"])
    bad = {"images": [{"id": 1}, {"id": 2}], "annotations": [{"image_id": 1, "id": 0, "caption": "a"}]}
    with pytest.raises(MetricError, match=r"1 image\(s\) have no caption.*\[2\]"):
        score_captions([{"image_id": 1, "caption": "a"}], bad, FAST)


def test_missing_java_says_what_to_install(monkeypatch, tmp_path, gt_file):
    gt, path = gt_file
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder without java
    monkeypatch.delenv("JAVA_HOME", raising=False)
    results = [{"image_id": i, "caption": c} for i, c in first_captions(gt).items()]
    with pytest.raises(JavaNotFoundError, match="default-jre-headless"):
        score_captions(results, path, FAST)
    with pytest.raises(JavaNotFoundError, match="report_metric: false"):
        CaptionTask(run_cfg(tmp_path))
    CaptionTask(run_cfg(tmp_path, report_metric=False))  # no Java needed when not scoring


def test_spice_without_its_models_says_how_to_get_them(tmp_path, gt_file):
    from lavis.tasks.metrics import spice_problem

    if spice_problem() is None:
        pytest.skip("the SPICE models are installed here")
    gt, path = gt_file
    with pytest.raises(MetricError, match="get_stanford_models"):
        score_captions([{"image_id": 100, "caption": "a"}], path, ["CIDEr", "SPICE"])
    with pytest.raises(ConfigError, match="run.metrics: SPICE needs"):
        CaptionTask(run_cfg(tmp_path, metrics=["CIDEr", "SPICE"]))


def test_a_dead_meteor_process_is_an_error_not_a_hang():
    server = MeteorServer()
    server._proc.kill()
    server._proc.wait()
    with pytest.raises(MetricError, match="METEOR stopped"):
        server.score([["a red circle"]], ["a red ball"], timeout_s=30)
    server.close()


# ---------------------------------------------------------------------------------------------
# the task
# ---------------------------------------------------------------------------------------------
class StubCaptioner:
    """Stands in for a captioning model: captions each image with a fixed text per id."""

    def __init__(self, captions: dict[int, str]):
        self.captions = captions
        self.calls: list[dict] = []

    def eval(self) -> "StubCaptioner":
        return self

    def generate(self, samples: dict, **kwargs) -> list[str]:
        self.calls.append(kwargs)
        return [self.captions[int(i)] for i in samples["image_id"]]


def test_valid_step_builds_results_from_generate(tmp_path):
    task = CaptionTask(run_cfg(tmp_path, num_beams=5, max_len=20, min_len=2, generate_kwargs={"repetition_penalty": 1.5}))
    model = StubCaptioner({7: "a red circle", 8: "a blue star"})
    out = task.valid_step(model, {"image": torch.zeros(2, 3, 8, 8), "image_id": torch.tensor([7, 8])})
    assert out == [{"image_id": 7, "caption": "a red circle"}, {"image_id": 8, "caption": "a blue star"}]
    assert all(type(r["image_id"]) is int for r in out)
    assert model.calls == [{"use_nucleus_sampling": False, "num_beams": 5, "max_length": 20, "min_length": 2,
                            "top_p": 0.9, "repetition_penalty": 1.5}]
    assert task.valid_step(model, {"image_id": [8]}) == [{"image_id": 8, "caption": "a blue star"}]

    class Wrapped(torch.nn.Module):  # DDP-like: generate lives on .module
        def __init__(self):
            super().__init__()
            self.module = model

    assert task.valid_step(Wrapped(), {"image_id": [7]})[0]["caption"] == "a red circle"


def test_valid_step_rejects_a_count_mismatch(tmp_path):
    task = CaptionTask(run_cfg(tmp_path))

    class TooFew(StubCaptioner):
        def generate(self, samples, **kw):
            return ["only one"]

    with pytest.raises(ValueError, match="1 captions for 2 images"):
        task.valid_step(TooFew({}), {"image_id": torch.tensor([1, 2])})


def test_merge_results_deduplicates_across_ranks(tmp_path):
    task = CaptionTask(run_cfg(tmp_path))
    rank0 = [{"image_id": 3, "caption": "c"}, {"image_id": 1, "caption": "a"}, {"image_id": 5, "caption": "e"}]
    rank1 = [{"image_id": 2, "caption": "b"}, {"image_id": 3, "caption": "c"}, {"image_id": 4, "caption": "d"},
             {"image_id": 1, "caption": "a"}]  # a DistributedSampler pads by repeating samples
    merged = task.merge_results([rank0, rank1])
    assert [r["image_id"] for r in merged] == [1, 2, 3, 4, 5]
    assert [r["caption"] for r in merged] == ["a", "b", "c", "d", "e"]


class CaptionSplit:
    """The part of an eval caption data set the task reads: its ground-truth file."""

    def __init__(self, gt_path):
        self.gt_path = str(gt_path)


def test_evaluation_and_after_evaluation_write_and_score(tmp_path, gt_file):
    gt, path = gt_file
    firsts = first_captions(gt)
    task = CaptionTask(run_cfg(tmp_path, agg_metric="CIDEr+Bleu_4"))
    ids = list(firsts)
    loader = [{"image_id": torch.tensor(ids[k:k + 5])} for k in range(0, len(ids), 5)]
    results = task.evaluation(StubCaptioner(firsts), loader, progress=False)
    assert [r["image_id"] for r in results] == sorted(ids)

    metrics = task.after_evaluation(results, "val", 3, CaptionSplit(path))
    assert set(metrics) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "agg_metrics"}
    assert metrics["agg_metrics"] == pytest.approx(metrics["CIDEr"] + metrics["Bleu_4"])
    assert metrics["Bleu_4"] > 0.99 and metrics["METEOR"] > 0.9

    written = json.loads((tmp_path / "out" / "result" / "val_epoch3.json").read_text())
    assert written == [{"image_id": i, "caption": firsts[i]} for i in sorted(ids)]
    saved = json.loads((tmp_path / "out" / "result" / "val_epoch3_metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    assert score_captions(tmp_path / "out" / "result" / "val_epoch3.json", path, FAST)["CIDEr"] == pytest.approx(metrics["CIDEr"])


def test_after_evaluation_without_metrics_only_writes(tmp_path):
    task = CaptionTask(run_cfg(tmp_path, report_metric=False))
    task.result_dir = tmp_path / "elsewhere"
    out = task.after_evaluation([{"image_id": 1, "caption": "a cat"}], "test", "best", object())
    assert out == {"agg_metrics": None}
    assert json.loads((tmp_path / "elsewhere" / "test_epochbest.json").read_text()) == [{"image_id": 1, "caption": "a cat"}]
    assert not (tmp_path / "elsewhere" / "test_epochbest_metrics.json").exists()


def test_after_evaluation_needs_a_gt_path(tmp_path):
    task = CaptionTask(run_cfg(tmp_path))
    with pytest.raises(MetricError, match="split 'val'.*no gt_path"):
        task.after_evaluation([{"image_id": 1, "caption": "a"}], "val", 0, object())


# ---------------------------------------------------------------------------------------------
# run keys
# ---------------------------------------------------------------------------------------------
def test_run_schema_keys_are_validated():
    assert registry.get_task_class("captioning") is CaptionTask
    run = {"task": "captioning", "max_len": 20, "min_len": 3, "num_beams": 1, "use_nucleus_sampling": True, "top_p": 0.8,
           "report_metric": True, "metrics": ["BLEU", "CIDEr"], "agg_metric": "CIDEr+Bleu_4",
           "generate_kwargs": {"repetition_penalty": 1.2}}
    assert validate({"run": run}) == []
    problems = validate({"run": {**run, "num_beams": "three", "metrics": "CIDEr", "max_lenn": 3}})
    assert "run.num_beams: expected int, got str 'three'" in problems
    assert any(p.startswith("run.metrics: expected list of str") for p in problems)
    assert any(p.startswith("run.max_lenn:") and "max_len" in p for p in problems)
    assert len(problems) == 3


def test_config_gives_defaults_and_the_task_checks_values(tmp_path):
    cfg = Config.from_dict({"run": {"task": "captioning", "output_dir": str(tmp_path)}}, options=["run.num_beams=1"])
    assert (cfg.run.max_len, cfg.run.min_len, cfg.run.num_beams, cfg.run.top_p) == (30, 5, 1, 0.9)
    assert list(cfg.run.metrics) == ["BLEU", "METEOR", "ROUGE_L", "CIDEr"] and cfg.run.agg_metric == "CIDEr"
    task = setup_task(cfg)
    assert isinstance(task, CaptionTask) and task.num_beams == 1 and task.result_dir == tmp_path / "result"

    with pytest.raises(ConfigError) as e:
        CaptionTask(run_cfg(tmp_path, min_len=40, num_beams=0, top_p=1.5, metrics=["BLEU", "CIDEr"],
                            agg_metric="METEOR", generate_kwargs={"num_beams": 2}))
    msg = str(e.value)
    for expected in ("run.min_len: 40 is above run.max_len 30", "run.num_beams: must be at least 1",
                     "run.top_p: must be in (0, 1]", "run.generate_kwargs.num_beams: set run.num_beams instead",
                     "run.agg_metric: 'METEOR' is not computed"):
        assert expected in msg
    with pytest.raises(ConfigError, match="did you mean 'CIDEr'"):
        CaptionTask(run_cfg(tmp_path, agg_metric="cidr"))
    with pytest.raises(TypeError, match=r"typed run section \(Config.run"):
        CaptionTask({"task": "captioning"})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# two ranks (gloo): every rank gets rank 0's metrics, and rank 0's failure, instead of hanging
# ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_rank_worker(rank: int, port: int, gt_path: str, out_dir: str, outcome_dir: str) -> None:
    import torch.distributed as tdist

    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        gt = json.loads(Path(gt_path).read_text())
        firsts = first_captions(gt)
        ids = sorted(firsts)
        task = CaptionTask(run_schema_for("captioning")(task="captioning", output_dir=out_dir, metrics=FAST))
        mine = [{"image_id": torch.tensor(ids[rank::2])}]  # each rank sees half of the split
        results = task.evaluation(StubCaptioner(firsts), mine, progress=False)
        outcome = {"n": len(results), "metrics": task.after_evaluation(results, "val", 0, CaptionSplit(gt_path))}
        try:  # rank 0 finds a missing id; rank 1 must hear about it
            task.after_evaluation(results[1:], "val", 1, CaptionSplit(gt_path))
        except Exception as e:  # noqa: BLE001
            outcome["error"] = f"{type(e).__name__}: {e}"
        Path(outcome_dir, f"rank{rank}.json").write_text(json.dumps(outcome))
    finally:
        tdist.destroy_process_group()


def test_two_ranks_agree_on_metrics_and_errors(tmp_path, gt_file):
    gt, path = gt_file
    torch.multiprocessing.spawn(_two_rank_worker, args=(_free_port(), str(path), str(tmp_path / "out"), str(tmp_path)),
                                nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["n"] == r1["n"] == len(gt["images"])
    assert r0["metrics"] == r1["metrics"] and r0["metrics"]["Bleu_4"] > 0.99
    assert "MetricError" in r0["error"] and "have no result: [100]" in r0["error"]
    assert r1["error"].startswith("MetricError: scoring on rank 0 failed") and "[100]" in r1["error"]
    assert os.listdir(tmp_path / "out" / "result") and (tmp_path / "out" / "result" / "val_epoch0.json").exists()


def test_nocaps_is_scored_per_domain_as_well(tmp_path):
    from omegaconf import OmegaConf

    from lavis.common.registry import registry
    from tests.unit.datasets.real_formats import builder_fixture

    cls = registry.get_builder_class("nocaps")
    cfg = OmegaConf.merge(cls.default_config().datasets.nocaps, builder_fixture("nocaps")(tmp_path / "default"))
    val = cls(cfg).build_datasets()["val"]
    assert val.domains == ["in-domain", "near-domain", "out-domain"]
    # the in-domain image gets a reference caption word for word, the others a wrong one
    results = [{"image_id": i, "caption": "a nocaps caption 0 of 0" if i == 0 else "three purple whales singing"}
               for i in val.image_ids]
    task = CaptionTask(run_cfg(tmp_path, metrics=["BLEU"], agg_metric="Bleu_4"))
    out = task.after_evaluation(results, "val", 0, val)
    assert out["in-domain/Bleu_1"] == pytest.approx(1.0, abs=1e-6)
    assert out["near-domain/Bleu_1"] < 0.2 and out["out-domain/Bleu_1"] < 0.2
    assert out["in-domain/Bleu_1"] > out["Bleu_1"] > out["out-domain/Bleu_1"]  # overall lies between
    saved = json.loads((tmp_path / "out" / "result" / "val_epoch0_metrics.json").read_text())
    assert saved["near-domain/Bleu_4"] == pytest.approx(out["near-domain/Bleu_4"])
