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
    from lavis.zoo.resolve import resolve_config_weights

    weights = tmp_path / "checkpoint_best.pth"
    with caplog.at_level("WARNING", logger="lavis.zoo.resolve"):
        assert resolve_config_weights({"finetuned": str(weights), "load_finetuned": False}, "m") is None
    assert f"model.finetuned is set ({weights}) but model.load_finetuned is false" in caplog.text
    assert "set model.load_finetuned=true" in caplog.text


def test_no_model_type_s_defaults_set_finetuned_without_loading_it():
    from pathlib import Path

    from omegaconf import OmegaConf

    root = Path(__file__).resolve().parents[3] / "lavis" / "configs" / "models"
    files = sorted(root.rglob("*.yaml"))
    assert len(files) > 30
    for f in files:
        model = OmegaConf.load(f).get("model") or {}
        assert not (model.get("finetuned") and not model.get("load_finetuned")), f
