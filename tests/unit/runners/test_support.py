"""Logger, replica checks, precision resolution and checkpoint helpers."""

import json
import logging
import random

import numpy as np
import pytest
import torch
from torch import nn

from lavis.common import dist
from lavis.common.checkpoint import atomic_save, get_rng_state, safe_torch_load, set_rng_state
from lavis.common.errors import CheckpointError, ConfigError
from lavis.common.logger import MetricLogger, SmoothedValue, read_metrics, setup_logging
from lavis.runners.checkpointing import (
    TrainState,
    link_or_copy,
    load_training_checkpoint,
    remove_stale_temp_files,
)
from lavis.runners.precision import cpu_supports_bf16, resolve_precision


# -- logger -------------------------------------------------------------------------------------
def test_metric_logger_writes_one_json_object_per_event(tmp_path):
    with MetricLogger(tmp_path, enabled=True) as logger:
        logger.log_event("train", {"loss": torch.tensor(0.5), "lr": np.float32(1e-3)}, step=3, epoch=0)
        logger.log_event("toy/val", {"agg_metrics": 71.0, "per_class": {"a": 1.0}}, step=10, epoch=0)
    events = read_metrics(tmp_path)
    assert [(e["split"], e["step"], e["epoch"]) for e in events] == [("train", 3, 0), ("toy/val", 10, 0)]
    assert events[0]["values"] == {"loss": 0.5, "lr": pytest.approx(1e-3)}
    assert events[1]["values"]["per_class"] == {"a": 1.0}
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # valid JSON, one object per line


def test_truncate_after_drops_events_of_steps_that_will_run_again(tmp_path):
    logger = MetricLogger(tmp_path, enabled=True)
    for step in range(1, 8):
        logger.log_event("train", {"loss": float(step)}, step=step, echo=False)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"split": "train", "ste')  # a line cut by a kill
    logger.truncate_after(4)
    logger.log_event("train", {"loss": 5.5}, step=5, echo=False)
    logger.close()
    assert [e["step"] for e in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]


def test_disabled_logger_writes_nothing(tmp_path):
    logger = MetricLogger(tmp_path / "x", enabled=False)
    logger.log_event("train", {"loss": 1.0}, step=1)
    logger.close()
    assert not (tmp_path / "x").exists()


def test_smoothed_value_and_its_state():
    v = SmoothedValue(window=3)
    for x in (1.0, 2.0, 3.0, 4.0):
        v.update(x)
    assert v.avg == 3.0 and v.global_avg == 2.5 and v.last == 4.0
    w = SmoothedValue()
    w.load_state_dict(v.state_dict())
    w.update(8.0), v.update(8.0)
    assert w.avg == v.avg == 5.0


def test_setup_logging_prefixes_the_rank(capsys):
    setup_logging()
    setup_logging()  # idempotent: one handler
    logging.getLogger("lavis.test").info("hello")
    out = capsys.readouterr().out
    assert out.count("hello") == 1 and "[rank0] INFO lavis.test: hello" in out


# -- replica checks -----------------------------------------------------------------------------
def test_replica_checker_detects_a_perturbed_rank():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    b.load_state_dict(a.state_dict())
    assert dist.find_replica_divergence([dist.param_digests(a), dist.param_digests(b)]) == []
    with torch.no_grad():  # one ulp on one element
        b[0].weight[1, 2] = torch.nextafter(b[0].weight[1, 2], torch.tensor(1.0))
    b[1].running_mean.add_(1)
    diff = dist.find_replica_divergence([dist.param_digests(a), dist.param_digests(a), dist.param_digests(b)])
    assert diff == ["0.weight (rank 0 vs rank 2)"]  # buffers differ between DDP forwards: not compared by default
    with_buffers = [dist.param_digests(m, buffers=True) for m in (a, b)]
    assert dist.find_replica_divergence(with_buffers) == [
        "0.weight (rank 0 vs rank 1)", "buffer:1.running_mean (rank 0 vs rank 1)"
    ]
    missing = dist.param_digests(a)
    missing.pop("0.bias")
    assert dist.find_replica_divergence([dist.param_digests(a), missing]) == ["0.bias (rank 0 vs rank 1)"]
    dist.check_replicas(a, step=1)  # not distributed: nothing to compare, no error


def test_digest_sees_dtype_and_shape():
    assert dist.tensor_digest(torch.zeros(4)) != dist.tensor_digest(torch.zeros(2, 2))
    assert dist.tensor_digest(torch.zeros(4)) != dist.tensor_digest(torch.zeros(4, dtype=torch.float64))
    bf16 = torch.zeros(3, dtype=torch.bfloat16)
    assert dist.tensor_digest(bf16) == dist.tensor_digest(bf16.clone())


# -- precision ----------------------------------------------------------------------------------
def test_precision_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("none", cpu).dtype is None
    assert resolve_precision("bf16", cpu).dtype == torch.bfloat16
    assert resolve_precision("auto", cpu).dtype == (torch.bfloat16 if cpu_supports_bf16() else None)
    assert resolve_precision("bf16", cpu).make_scaler() is None
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU.*bf16"):
        resolve_precision("fp16", cpu)
    with resolve_precision("bf16", cpu).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


# -- checkpoint helpers -------------------------------------------------------------------------
def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    state = get_rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    atomic_save({"rng": [state]}, tmp_path / "c.pth")
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    set_rng_state(safe_torch_load(tmp_path / "c.pth")["rng"][0])
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_link_or_copy_is_independent_of_later_writes(tmp_path):
    atomic_save({"v": torch.tensor(1)}, tmp_path / "a.pth")
    link_or_copy(tmp_path / "a.pth", tmp_path / "b.pth")
    atomic_save({"v": torch.tensor(2)}, tmp_path / "a.pth")
    assert safe_torch_load(tmp_path / "b.pth")["v"].item() == 1
    link_or_copy(tmp_path / "a.pth", tmp_path / "b.pth")  # replaces an existing file
    assert safe_torch_load(tmp_path / "b.pth")["v"].item() == 2


def test_stale_temp_files_are_removed(tmp_path):
    (tmp_path / ".checkpoint_latest.pth.abc.tmp").write_bytes(b"partial")
    (tmp_path / "checkpoint_0.pth").write_bytes(b"keep")
    assert [p.name for p in remove_stale_temp_files(tmp_path)] == [".checkpoint_latest.pth.abc.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_0.pth"]


def test_training_checkpoint_loader_explains_what_is_wrong(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_training_checkpoint(tmp_path / "plain.pth")
    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_training_checkpoint(tmp_path / "cut.pth")


def test_train_state_round_trip_ignores_unknown_keys():
    st = TrainState(epoch=2, data_batches=5, best_metric=0.5, last_valid={"toy/val": {"agg_metrics": 1.0}})
    assert TrainState.from_dict({**st.to_dict(), "future_key": 1}) == st


def test_truncate_after_keeps_the_mode_a_fresh_metrics_file_gets(tmp_path):
    import os

    old_umask = os.umask(0o022)
    try:
        fresh = MetricLogger(tmp_path / "fresh", enabled=True)
        fresh.log_event("train", {"loss": 1.0}, step=1, echo=False)
        fresh.close()
        logger = MetricLogger(tmp_path / "resumed", enabled=True)
        for step in (1, 2, 3):
            logger.log_event("train", {"loss": 1.0}, step=step, echo=False)
        logger.truncate_after(2)  # what a resume does
        logger.close()
    finally:
        os.umask(old_umask)
    mode = lambda p: oct(os.stat(p).st_mode & 0o777)  # noqa: E731
    assert mode(tmp_path / "fresh" / "metrics.jsonl") == "0o644"
    assert mode(tmp_path / "resumed" / "metrics.jsonl") == "0o644"
    assert [e["step"] for e in read_metrics(tmp_path / "resumed")] == [1, 2]
