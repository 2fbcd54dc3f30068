"""A local checkpoint path that does not exist: the error names what its folder does hold."""

import pytest

from lavis.common.errors import CheckpointError
from lavis.zoo.entries import WeightSource
from lavis.zoo.fetch import fetch_file


def test_a_missing_best_checkpoint_names_the_run_s_other_checkpoints(tmp_path):
    for name in ("checkpoint_latest.pth", "checkpoint_0.pth", "metrics.jsonl"):
        (tmp_path / name).write_bytes(b"x")
    source = WeightSource(kind="file", location=str(tmp_path / "checkpoint_best.pth"), role="finetuned")
    with pytest.raises(CheckpointError) as e:
        fetch_file(source)
    msg = str(e.value)
    assert f"the finetuned checkpoint {tmp_path / 'checkpoint_best.pth'} does not exist" in msg
    assert f"{tmp_path} has checkpoint_0.pth, checkpoint_latest.pth (a run without run.valid_splits" in msg
    assert "metrics.jsonl" not in msg


def test_a_missing_file_in_a_folder_without_checkpoints_says_only_that(tmp_path):
    source = WeightSource(kind="file", location=str(tmp_path / "nope" / "model.pth"), role="pretrained")
    with pytest.raises(CheckpointError, match=r"does not exist$"):
        fetch_file(source)
    assert fetch_file(WeightSource(kind="file", location=__file__, role="pretrained")).name.endswith(".py")


def test_finetuned_without_load_finetuned_is_warned_about(tmp_path, caplog):
    from lavis.zoo.resolve import warn_unloaded_finetuned

    weights = tmp_path / "checkpoint_best.pth"
    with caplog.at_level("WARNING", logger="lavis.zoo.resolve"):
        assert warn_unloaded_finetuned({"finetuned": str(weights), "load_finetuned": False})
        assert not warn_unloaded_finetuned({"finetuned": str(weights), "load_finetuned": True})
        assert not warn_unloaded_finetuned({"load_finetuned": False})
    assert caplog.text.count("model.load_finetuned is false") == 1
    assert f"model.finetuned is set ({weights}) but model.load_finetuned is false" in caplog.text
    assert "set model.load_finetuned=true" in caplog.text


def test_a_run_s_model_is_checked_when_the_task_builds_it(monkeypatch):
    from omegaconf import OmegaConf

    from lavis.tasks.base_task import BaseTask

    seen = []

    class Built:
        @classmethod
        def from_config(cls, model_cfg):
            seen.append("built")
            return cls()

    monkeypatch.setattr("lavis.zoo.resolve.warn_unloaded_finetuned", lambda m: seen.append(m["finetuned"]))
    monkeypatch.setattr("lavis.tasks.base_task.registry.get_model_class", lambda arch: Built)
    cfg = OmegaConf.create({"model": {"arch": "blip_caption", "model_type": "tiny", "finetuned": "x.pth"}})
    assert isinstance(BaseTask.__new__(BaseTask).build_model(cfg), Built)
    assert seen == ["x.pth", "built"]  # checked before the model is built


def test_no_model_type_s_defaults_set_finetuned_without_loading_it():
    from pathlib import Path

    from omegaconf import OmegaConf

    root = Path(__file__).resolve().parents[3] / "lavis" / "configs" / "models"
    files = sorted(root.rglob("*.yaml"))
    assert len(files) > 30
    for f in files:
        model = OmegaConf.load(f).get("model") or {}
        assert not (model.get("finetuned") and not model.get("load_finetuned")), f
