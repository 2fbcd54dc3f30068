"""``evaluate.py`` on benchmarks under ``torchrun --nproc_per_node 2`` (gloo, CPU): the ranks share
the questions, the base task's gather puts every answer in the report exactly once, and the scores
equal a one-process run's."""

from __future__ import annotations

import json
import pytest
from omegaconf import OmegaConf

from tests.toy.cli import ROOT, finish, start
from tests.unit.datasets.benchmark_formats import BENCHMARK_LAYOUTS
from tests.unit.datasets.real_formats import write_files

# three processes that each import torch and transformers: about a minute on the shared 2-core machine
pytestmark = [pytest.mark.dist, pytest.mark.slow]


def test_ddp_benchmark_reports_match_one_process(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    for name in ("mme", "mmbench"):
        write_files(cache, BENCHMARK_LAYOUTS[name]())
    monkeypatch.setenv("LAVIS_CACHE_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = {"model": {"arch": "qwen2_vl", "model_type": "tiny"}, "datasets": {"mme": {}, "mmbench": {}},
           "run": {"task": "benchmark", "device": "cpu", "batch_size_eval": 2, "max_new_tokens": 3,
                   "progress_bar": False, "tensorboard": False, "test_splits": ["test", "dev"]}}
    path = tmp_path / "bench.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    runs = {n: start(path, [f"run.output_dir={tmp_path / n}"], nproc=k, script=ROOT / "evaluate.py")
            for n, k in (("ddp", 2), ("single", 1))}
    out = {n: finish(p, timeout=300) for n, p in runs.items()}
    assert "mme / test" in out["ddp"] and "mmbench / dev" in out["ddp"]
    for name, split, size in (("mme", "test", 8), ("mmbench", "dev", 5)):
        ddp, single = (json.loads((tmp_path / n / "result" / f"{name}_{split}.json").read_text())
                       for n in ("ddp", "single"))
        ids = [p["id"] for p in ddp["predictions"]]
        assert len(ids) == len(set(ids)) == size  # each question answered once, by one rank
        assert ddp["metrics"] == single["metrics"] and ddp["subtasks"] == single["subtasks"]
        assert {p["id"]: p["reply"] for p in ddp["predictions"]} == {p["id"]: p["reply"] for p in single["predictions"]}
    logged = [json.loads(line)["split"] for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert {"mme/test", "mmbench/dev"} <= set(logged)
