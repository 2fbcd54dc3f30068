"""Every experiment config under configs/ and projects/ loads and validates against the run schema,
the task's run keys and the registry (Config.from_file), without building a model; the BLIP project
configs carry the hyper-parameters of LAVIS's published recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lavis.common.config import Config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(REPO).as_posix() for folder in ("configs", "projects") for p in (REPO / folder).rglob("*.yaml"))


def test_the_config_folders_are_found() -> None:
    assert "configs/demo/caption_shapes.yaml" in CONFIGS
    assert {"projects/blip/caption_coco_ft.yaml", "projects/blip/caption_coco_eval.yaml",
            "projects/blip/caption_nocaps_eval.yaml"} <= set(CONFIGS)


@pytest.mark.parametrize("path", CONFIGS)
def test_every_experiment_config_validates(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from lavis.models.base_model import BaseModel

    monkeypatch.setattr(BaseModel, "__init__", lambda *a, **k: pytest.fail("validation must not build a model"))
    cfg = Config.from_file(REPO / path)  # raises ConfigError naming every bad key
    assert cfg.run.task and cfg.model.arch and len(cfg.datasets) >= 1


def test_blip_coco_finetune_follows_the_lavis_recipe() -> None:
    cfg = Config.from_file(REPO / "projects/blip/caption_coco_ft.yaml")
    run = cfg.run
    assert (run.init_lr, run.min_lr, run.weight_decay, run.max_epoch) == (1e-5, 0.0, 0.05, 5)
    assert (run.batch_size_train, run.batch_size_eval, run.lr_sched) == (32, 64, "lavis_cosine_lr")
    assert run.warmup_lr == -1.0  # LAVIS's per-epoch cosine with its default warm-up start
    assert (run.max_len, run.min_len, run.num_beams) == (20, 5, 3)
    assert (list(run.train_splits), list(run.valid_splits), list(run.test_splits)) == (["train"], ["val"], ["test"])
    assert cfg.model.model_type == "base_coco" and cfg.model.load_finetuned is False
    train = cfg.datasets.coco.vis_processor.train
    assert (train.name, train.image_size, train.randaugment) == ("blip_image_train", 384, True)
    import inspect

    from lavis.common.registry import registry

    model_prompt = inspect.signature(registry.get_model_class("blip_caption")).parameters["prompt"].default
    assert cfg.datasets.coco.text_processor.train.prompt == "a picture of " == cfg.model.get("prompt", model_prompt)
    assert cfg.datasets.coco.build_info.annotations.test.gt == "coco_gt/coco_karpathy_test_gt.json"


def test_blip_eval_configs_follow_the_lavis_recipes() -> None:
    coco = Config.from_file(REPO / "projects/blip/caption_coco_eval.yaml").run
    assert coco.evaluate is True and list(coco.test_splits) == ["test"]
    assert (coco.batch_size_eval, coco.max_len, coco.min_len, coco.num_beams) == (64, 20, 5, 3)
    nocaps = Config.from_file(REPO / "projects/blip/caption_nocaps_eval.yaml")
    assert list(nocaps.run.test_splits) == ["val", "test"] and nocaps.run.report_metric is False
    assert nocaps.datasets.nocaps.vis_processor.eval.image_size == 384
    # the override docs/reproducing.md gives for scoring val locally is valid
    local = Config.from_file(REPO / "projects/blip/caption_nocaps_eval.yaml",
                             ["run.test_splits=[val]", "run.report_metric=true"])
    assert list(local.run.test_splits) == ["val"] and local.run.report_metric is True


# LAVIS 1.0.2's lavis/projects/<family>/ values: (init_lr, min_lr, weight_decay, max_epoch, batch_size_train, batch_size_eval)
FINETUNE_RECIPES = {
    "projects/blip/retrieval_coco_ft.yaml": (2e-5, 0.0, 0.04, 6, 32, 128),
    "projects/blip/retrieval_flickr_ft.yaml": (1e-5, 0.0, 0.05, 6, 32, 64),
    "projects/blip/vqav2_ft.yaml": (2e-5, 0.0, 0.05, 10, 16, 64),
    "projects/blip/okvqa_ft.yaml": (3e-5, 1e-5, 0.02, 7, 16, 16),
    "projects/blip/aokvqa_ft.yaml": (2e-5, 1e-5, 0.02, 7, 16, 16),
    "projects/blip/nlvr_ft.yaml": (2.5e-5, 0.0, 0.05, 15, 16, 64),
    "projects/albef/retrieval_coco_ft.yaml": (1e-5, 1e-6, 0.05, 5, 32, 64),
    "projects/albef/retrieval_flickr_ft.yaml": (1e-5, 1e-6, 0.02, 10, 32, 64),
    "projects/albef/vqav2_ft.yaml": (2e-5, 1e-6, 0.02, 8, 32, 64),
    "projects/albef/okvqa_ft.yaml": (2e-5, 1e-6, 0.02, 6, 16, 16),
    "projects/albef/aokvqa_ft.yaml": (2e-5, 1e-6, 0.02, 6, 16, 16),
    "projects/albef/snli_ve_ft.yaml": (2e-5, 0.0, 0.05, 10, 32, 64),
    "projects/albef/nlvr_ft.yaml": (2e-5, 1e-6, 0.02, 10, 16, 64),
    "projects/albef/pretrain.yaml": (3e-4, 1e-6, 0.05, 20, 64, 64),
}


@pytest.mark.parametrize("path", sorted(FINETUNE_RECIPES))
def test_finetune_configs_carry_the_lavis_recipe(path: str) -> None:
    run = Config.from_file(REPO / path).run
    assert (run.init_lr, run.min_lr, run.weight_decay, run.max_epoch, run.batch_size_train,
            run.batch_size_eval) == FINETUNE_RECIPES[path]
    assert run.lr_sched == ("lavis_step_lr" if path.endswith("pretrain.yaml") else "lavis_cosine_lr")
    assert run.evaluate is False and list(run.train_splits) == ["train"]


def test_retrieval_vqa_and_pretrain_specifics() -> None:
    k = {p: Config.from_file(REPO / p).run.k_test for p in (
        "projects/blip/retrieval_coco_ft.yaml", "projects/blip/retrieval_flickr_eval.yaml",
        "projects/albef/retrieval_coco_ft.yaml", "projects/albef/retrieval_coco_eval.yaml")}
    assert list(k.values()) == [256, 128, 256, 128]
    vqa = Config.from_file(REPO / "projects/blip/vqav2_ft.yaml")
    assert (vqa.run.inference_method, vqa.run.num_ans_candidates) == ("rank", 128)
    assert vqa.datasets.vqav2.vis_processor.train.image_size == 480 and vqa.model.load_finetuned is False
    nlvr = Config.from_file(REPO / "projects/albef/nlvr_ft.yaml").run
    assert (nlvr.warmup_lr, nlvr.warmup_steps, list(nlvr.valid_splits)) == (1e-5, 650, ["dev"])
    pre = Config.from_file(REPO / "projects/albef/pretrain.yaml")
    assert (pre.run.warmup_lr, pre.run.warmup_steps, pre.run.lr_decay_rate) == (1e-6, 3000, 0.9)
    assert pre.model.vision_config.image_size == 256 and set(pre.datasets) == {"coco", "cc3m", "cc12m"}
    assert all(pre.datasets[d].vis_processor.train.image_size == 256 for d in pre.datasets)
    assert all(pre.datasets[d].text_processor.train.prompt == "" for d in pre.datasets)
    clip = Config.from_file(REPO / "projects/clip/retrieval_coco_eval.yaml")
    assert clip.model.model_type == "ViT-L-14-336" and clip.datasets.coco.vis_processor.eval.image_size == 336
