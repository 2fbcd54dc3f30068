"""The retrieval, VQA, classification and multimodal classification tasks end to end: ``evaluate.py``
(``evaluate_main``) on each task's fixture data with a contract test model writes the metrics JSON;
``train.py`` trains and validates retrieval; under ``torchrun`` with 2 ranks (gloo) retrieval gives
the same ranks and metrics as one process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.contract_models import register_toy_models, unregister
from tests.test_registry_kinds import contract_task_fixture
from tests.toy.cli import finish, start

EVAL_CASES = {
    "retrieval": (contract_task_fixture("retrieval", "toy_retrieval", "shapes_retrieval", k_test=10), "val", "shapes_retrieval"),
    "vqa": (contract_task_fixture("vqa", "toy_vqa", "shapes_vqa", inference_method="rank"), "val", "shapes_vqa"),
    "classification": (contract_task_fixture("classification", "toy_classifier", "imagenet"), "val", "imagenet"),
    "multimodal_classification": (contract_task_fixture("multimodal_classification", "toy_classifier", "snli_ve"),
                                  "dev", "snli_ve"),
}
QUIET = {"device": "cpu", "progress_bar": False, "tensorboard": False, "batch_size_train": 4, "batch_size_eval": 3}


@pytest.fixture
def toy_models(one_thread):
    added = register_toy_models()
    yield
    unregister(added)


def write(cfg: dict, path: Path, **run) -> Path:
    cfg["run"].update(QUIET, **run)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    return path


@pytest.mark.parametrize("task", sorted(EVAL_CASES))
def test_evaluate_writes_the_metrics_json(task, tmp_path, toy_models):
    from lavis.cli import evaluate_main

    make, split, data = EVAL_CASES[task]
    path = write(make(tmp_path), tmp_path / "eval.yaml", test_splits=[split])
    metrics = evaluate_main(["--cfg-path", str(path)])[f"{data}/{split}"]
    saved = json.loads(next((tmp_path / "out" / "result").glob(f"{split}_epoch*_metrics.json")).read_text())
    assert saved == pytest.approx(metrics)
    assert 0 <= metrics["agg_metrics"] <= 100


def test_train_retrieval_validates_each_epoch(tmp_path, toy_models):
    from lavis.cli import train_main

    make, _, _ = EVAL_CASES["retrieval"]
    path = write(make(tmp_path), tmp_path / "train.yaml", max_epoch=2, valid_splits=["val"], test_splits=["test"],
                 init_lr=1e-2)
    result = train_main(["--cfg-path", str(path)])
    assert (tmp_path / "out" / "result" / "val_epoch1_metrics.json").is_file()
    assert (tmp_path / "out" / "result" / "test_epochbest_metrics.json").is_file()
    assert "r_mean" in json.dumps(result)


# about 50 s on 2 shared cores (three interpreters start); the rank-share logic itself is unit-tested
# in tests/unit/tasks/test_retrieval.py in the default tier
@pytest.mark.dist
@pytest.mark.slow
def test_two_ranks_rank_retrieval_like_one(tmp_path):
    cfg = contract_task_fixture("retrieval", "toy_retrieval", "shapes_retrieval", k_test=10)(tmp_path)
    cfg["datasets"]["shapes_retrieval"]["build_info"]["generator"].update(num_val=7, num_test=2)  # odd: uneven shares
    path = write(cfg, tmp_path / "eval.yaml", test_splits=["val"], rerank_batch_size=8)
    launcher = Path(__file__).resolve().parent / "helpers" / "evaluate_contract.py"
    one = start(path, [f"run.output_dir={tmp_path / 'one'}"], result=tmp_path / "one.json", script=launcher)
    finish(one, timeout=240)  # first: generates the shared data folder
    two = start(path, [f"run.output_dir={tmp_path / 'two'}"], result=tmp_path / "two.json", nproc=2, script=launcher)
    finish(two, timeout=240)
    m1 = json.loads((tmp_path / "one.json").read_text())["shapes_retrieval/val"]
    m2 = json.loads((tmp_path / "two.json").read_text())["shapes_retrieval/val"]
    assert m2 == pytest.approx(m1)
    rows1 = json.loads((tmp_path / "one" / "result" / "val_epoch0.json").read_text())
    rows2 = json.loads((tmp_path / "two" / "result" / "val_epoch0.json").read_text())
    assert len(rows1) == 7 + 35 and [r["rank"] for r in rows2] == [r["rank"] for r in rows1]
    assert [r["top"] for r in rows2] == [r["top"] for r in rows1]
