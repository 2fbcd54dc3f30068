"""train.py / evaluate.py on a project config whose data set is not downloaded: the run stops
before any model is built, with the missing path and the exact download command."""

from __future__ import annotations

from pathlib import Path

import pytest

from lavis.cli import evaluate_main, train_main
from lavis.datasets.builders.real_builder import DatasetFilesMissing
from lavis.tasks.base_task import BaseTask

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    built: list[str] = []
    monkeypatch.setattr(BaseTask, "build_model", lambda self, cfg: built.append(cfg.model.arch))
    return built


def test_train_on_coco_without_the_data_stops_before_the_model(cache_home: Path, tmp_path: Path,
                                                                no_model: list[str]) -> None:
    with pytest.raises(DatasetFilesMissing) as err:
        train_main(["--cfg-path", str(REPO / "projects/blip/caption_coco_ft.yaml"),
                    "--options", f"run.output_dir={tmp_path / 'out'}", "run.device=cpu"])
    msg = str(err.value)
    assert str(cache_home / "coco/annotations/coco_karpathy_train.json") in msg
    assert str(cache_home / "coco/images") in msg
    assert msg.rstrip().endswith("python -m lavis.datasets.download coco")
    assert no_model == []


def test_evaluate_nocaps_with_only_the_annotations_names_the_images_command(cache_home: Path, tmp_path: Path,
                                                                            no_model: list[str]) -> None:
    from tests.unit.datasets.real_formats import LAYOUTS, write_files

    write_files(cache_home, {k: v for k, v in LAYOUTS["nocaps"]().items()
                             if k in ("nocaps/annotations/nocaps_val.json", "nocaps/annotations/nocaps_test.json")})
    with pytest.raises(DatasetFilesMissing) as err:
        evaluate_main(["--cfg-path", str(REPO / "projects/blip/caption_nocaps_eval.yaml"),
                       "--options", f"run.output_dir={tmp_path / 'out'}", "run.device=cpu"])
    msg = str(err.value)
    assert "python -m lavis.datasets.download nocaps --only images" in msg and "annotations missing" not in msg
    assert str(cache_home / "nocaps/annotations/nocaps_val_4500_captions.json") in msg
    assert no_model == []
