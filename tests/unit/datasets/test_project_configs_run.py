"""Two of the retrieval-family project configs run end to end from an empty cache, through the
download command and a local mirror of published-format fixtures, with tiny-model and short-run
overrides: BLIP COCO retrieval fine-tuning (train, validate, test recall@k) and ALBEF pre-training
(train only, the retrieval task with no eval splits; COCO part only, since the web shards have no
download mirror)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.helpers.http_server import FileServer
from tests.unit.datasets.test_download_to_builder import mirror, run_command, serve_fixture  # noqa: F401

pytest_plugins = ["tests.helpers.fixtures"]  # http_server, lavis_cache

PROJECTS = Path(__file__).resolve().parents[3] / "projects"
SHORT_RUN = ["run.device=cpu", "run.num_workers=0", "run.max_epoch=1", "run.batch_size_train=2",
             "run.batch_size_eval=2", "run.progress_bar=false", "run.tensorboard=false"]


def _coco(server: FileServer) -> None:
    serve_fixture(server, "coco")
    assert run_command("python -m lavis.datasets.download coco --no-progress") == 0


def test_blip_coco_retrieval_finetune_trains_validates_and_tests(mirror: FileServer, lavis_cache: Path, tmp_path: Path,  # noqa: F811
                                                                 one_thread) -> None:
    from lavis.cli import train_main

    _coco(mirror)
    result = train_main(["--cfg-path", str(PROJECTS / "blip" / "retrieval_coco_ft.yaml"), "--options",
                         "model.model_type=tiny", "model.queue_size=8", "datasets.coco.vis_processor.train.image_size=64",
                         "datasets.coco.vis_processor.eval.image_size=64", *SHORT_RUN, f"run.output_dir={tmp_path / 'run'}"])
    assert result["train"]["global_step"] == 2  # 4 training captions, batch 2
    assert set(result["valid"]) == {"coco/val"}
    test = result["test"]["coco/test"]
    assert 0.0 <= test["txt_r1"] <= test["txt_r10"] <= 100.0 and test["agg_metrics"] == test["r_mean"]


def test_albef_pretrain_trains_on_coco_captions(mirror: FileServer, lavis_cache: Path, tmp_path: Path,  # noqa: F811
                                                one_thread) -> None:
    from lavis.cli import train_main

    _coco(mirror)
    cfg = yaml.safe_load((PROJECTS / "albef" / "pretrain.yaml").read_text())
    cfg["datasets"] = {"coco": cfg["datasets"]["coco"]}
    cfg["datasets"]["coco"]["vis_processor"]["train"]["image_size"] = 64
    path = tmp_path / "pretrain_coco.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = train_main(["--cfg-path", str(path), "--options", "model.model_type=tiny", "model.queue_size=48",
                         "model.vision_config.image_size=64", "run.warmup_steps=1", *SHORT_RUN,
                         f"run.output_dir={tmp_path / 'run'}"])
    assert result["train"]["global_step"] == 2 and result["valid"] == {} and result["test"] == {}
    assert result["train"]["loss"] > 0
