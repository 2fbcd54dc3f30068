"""The typed run section: Config.run is a dataclass instance, resume-sensitive keys come from field
metadata, and runner checks run in config validation, before any data or model is built."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from lavis.common.config import Config, run_schema_for
from lavis.common.errors import ConfigError
from lavis.common.run_schema import RunConfig, resume_sensitive_keys
from lavis.tasks.captioning import CaptionRunConfig

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "configs" / "demo" / "caption_shapes.yaml"


def test_config_run_is_a_typed_instance_of_the_tasks_schema(tmp_path):
    cfg = Config.from_file(DEMO, [f"run.output_dir={tmp_path}", "run.betas=[0.8,0.9]", "run.init_lr=2e-4"])
    run = cfg.run
    assert isinstance(run, RunConfig) and isinstance(run, CaptionRunConfig)
    assert dataclasses.is_dataclass(run) and type(run) is not RunConfig
    assert run.init_lr == 2e-4 and run.betas == [0.8, 0.9] and type(run.betas) is list
    assert run.num_beams == 3 and run.train_splits == ["train"] and run.skip_nonfinite_steps == 0
    assert {f.name for f in dataclasses.fields(run)} == {f.name for f in dataclasses.fields(run_schema_for("captioning"))}
    assert cfg.to_dict()["run"]["init_lr"] == 2e-4  # the saved config says the same


def test_resume_sensitive_keys_come_from_field_metadata():
    keys = resume_sensitive_keys(RunConfig)
    assert {"seed", "init_lr", "lr_sched", "batch_size_train", "accum_grad_iters", "betas", "amp"} <= set(keys)
    assert not {"output_dir", "log_freq", "num_workers", "resume_ckpt_path", "skip_nonfinite_steps"} & set(keys)

    @dataclasses.dataclass
    class Extra:
        temperature: float = dataclasses.field(default=1.0, metadata={"resume": "sensitive"})
        verbose: bool = False

    schema = dataclasses.make_dataclass("R", [], bases=(Extra, RunConfig))
    assert "temperature" in resume_sensitive_keys(schema) and "verbose" not in resume_sensitive_keys(schema)


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail the test if a data set, a model or a runner gets built."""
    from lavis.tasks.base_task import BaseTask

    def forbidden(*a, **k):
        raise AssertionError("built something before the config was rejected")

    monkeypatch.setattr(BaseTask, "build_datasets", forbidden)
    monkeypatch.setattr(BaseTask, "build_model", forbidden)
    monkeypatch.setattr("lavis.runners.base_runner.TrainRunnerBase.__init__", forbidden)


def load_train_py():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_cli", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runner_checks_fail_in_config_validation_before_anything_is_built(tmp_path, nothing_built):
    train = load_train_py()
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as e:
        train.main(["--cfg-path", str(DEMO), "--options", f"run.output_dir={out}", "run.runner=runner_iter",
                    "run.num_workers=-1", "run.max_grad_norm=0", "run.skip_nonfinite_steps=-2", "run.betas=[0.9]",
                    "run.device=cpu", "run.amp=fp16", "run.prefetch_factor=0"])
    msg = str(e.value)
    assert "7 problem(s)" in msg
    for expected in ("run.max_iters: runner_iter needs the number of optimizer steps (>= 1), got None",
                     "run.num_workers: must be >= 0, got -1", "run.max_grad_norm: must be > 0",
                     "run.skip_nonfinite_steps: must be >= 0, got -2", "run.betas: expected two numbers, got [0.9]",
                     "run.amp: fp16 needs a CUDA GPU", "run.prefetch_factor: must be >= 1, got 0"):
        assert expected in msg
    assert not out.exists()


def test_distributed_strategy_is_checked_before_building(tmp_path, nothing_built):
    train = load_train_py()
    base = ["--cfg-path", str(DEMO), "--options", f"run.output_dir={tmp_path / 'o'}"]
    with pytest.raises(ConfigError, match=r"run.distributed_strategy: 'zero3' is not one of ddp, fsdp"):
        train.main(base + ["run.distributed_strategy=zero3"])
    with pytest.raises(ConfigError) as e:
        train.main(base + ["run.distributed_strategy=fsdp", "run.check_replicas_every=1", "run.device=cpu",
                           "run.amp=fp16"])
    assert "run.check_replicas_every: compares whole weights across DDP replicas" in str(e.value)
    assert "run.amp: fp16 (loss scaling) is not supported with run.distributed_strategy=fsdp" in str(e.value)


def test_iteration_runner_settings_are_checked_before_building(tmp_path, nothing_built):
    train = load_train_py()
    with pytest.raises(ConfigError, match=r"run.iters_per_inner_epoch: must be >= 1 .*got 0"):
        train.main(["--cfg-path", str(DEMO), "--options", f"run.output_dir={tmp_path / 'o'}", "run.runner=runner_iter",
                    "run.max_iters=10", "run.iters_per_inner_epoch=0"])


def test_the_command_line_exits_with_status_2_and_one_message(tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--cfg-path", str(DEMO), "--options",
         f"run.output_dir={tmp_path / 'out'}", "run.runner=runner_iter"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "LAVIS_CACHE_HOME": str(cache), "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error:" in proc.stderr and "run.max_iters: runner_iter needs" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists() and not cache.exists()  # no data generated, no output folder


def test_run_schema_is_one_class_per_task_so_run_configs_compare_equal():
    assert run_schema_for("captioning") is run_schema_for("captioning")
    cls = run_schema_for("captioning")
    assert cls(output_dir="x") == cls(output_dir="x")
