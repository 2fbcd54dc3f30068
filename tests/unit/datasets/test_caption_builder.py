"""The registered ``shapes_caption`` builder and its shipped default config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lavis.common.errors import ConfigError, UnknownNameError
from lavis.common.registry import registry
from lavis.datasets.builders import load_dataset
from lavis.datasets.builders.caption_builders import ShapesCaptionBuilder
from lavis.datasets.torch_datasets.caption_datasets import CaptionDataset, CaptionEvalDataset
from lavis.datasets.synthetic.shapes import read_manifest


def small_config(**generator):
    cfg = ShapesCaptionBuilder.default_config().datasets.shapes_caption
    params = {"num_train": 8, "num_val": 4, "num_test": 3, **generator}
    return OmegaConf.merge(cfg, {"build_info": {"storage": "shapes/test", "generator": params}})


def test_registered_under_its_name() -> None:
    assert registry.get_builder_class("shapes_caption") is ShapesCaptionBuilder
    assert "shapes_caption" in registry.list_datasets()


def test_default_config() -> None:
    cfg = ShapesCaptionBuilder.default_config()
    d = cfg.datasets.shapes_caption
    assert d.build_info.storage == "shapes/default"
    assert d.build_info.generator.seed == 0 and d.build_info.generator.image_size == 64
    assert set(d.build_info.annotations) == {"train", "val", "test"}
    assert d.vis_processor.train.name == "blip_image_train" and d.vis_processor.train.horizontal_flip is False
    assert d.vis_processor.eval.name == "blip_image_eval"
    assert d.text_processor.train.prompt == "a picture of "


def test_builds_every_split_in_the_cache(cache_home: Path) -> None:
    builder = ShapesCaptionBuilder(small_config())
    assert builder.storage == cache_home / "shapes" / "test"
    datasets = builder.build_datasets()
    assert set(datasets) == {"train", "val", "test"}
    assert (cache_home / "shapes" / "test" / "MANIFEST.json").is_file()
    assert (cache_home / "shapes" / ".test.lock").is_file()
    train, val, test = datasets["train"], datasets["val"], datasets["test"]
    assert type(train) is CaptionDataset and type(val) is CaptionEvalDataset and type(test) is CaptionEvalDataset
    assert (len(train), len(val), len(test)) == (40, 4, 3)
    item = train[0]
    assert set(item) == {"image", "text_input", "image_id"} and item["image"].shape == (3, 64, 64)
    assert item["text_input"].startswith("a picture of a ")
    eval_item = val[0]
    assert set(eval_item) == {"image", "image_id", "instance_id"} and eval_item["image"].shape == (3, 64, 64)
    assert val.gt_path == cache_home / "shapes/test/captions/val_gt.json" and val.gt_path.is_file()
    assert test.gt_path.name == "test_gt.json"
    # train and eval get their own processors from the base class
    assert train.vis_processor is builder.vis_processors["train"]
    assert val.vis_processor is builder.vis_processors["eval"]
    assert val.text_processor is builder.text_processors["eval"]


def test_eval_images_are_not_augmented(cache_home: Path) -> None:
    val = ShapesCaptionBuilder(small_config()).build_datasets()["val"]
    torch.manual_seed(0)
    a = val[1]["image"]
    torch.manual_seed(1)
    assert torch.equal(a, val[1]["image"])


def test_prepare_reuses_and_regenerates_on_parameter_change(cache_home: Path) -> None:
    ShapesCaptionBuilder(small_config()).prepare()
    manifest = cache_home / "shapes/test/MANIFEST.json"
    stamp = manifest.stat().st_mtime_ns
    ShapesCaptionBuilder(small_config()).prepare()
    assert manifest.stat().st_mtime_ns == stamp
    datasets = ShapesCaptionBuilder(small_config(seed=7, num_val=6)).build_datasets()
    assert len(datasets["val"]) == 6
    assert read_manifest(cache_home / "shapes/test")["params"]["seed"] == 7


def test_absolute_storage_is_used_as_is(tmp_path: Path) -> None:
    cfg = OmegaConf.merge(small_config(), {"build_info": {"storage": str(tmp_path / "elsewhere")}})
    builder = ShapesCaptionBuilder(cfg)
    builder.prepare()
    assert builder.storage == tmp_path / "elsewhere" and (tmp_path / "elsewhere" / "MANIFEST.json").is_file()


def test_load_dataset_with_the_shipped_default(cache_home: Path) -> None:
    datasets = load_dataset("shapes_caption")  # 2000 / 200 / 200 images, a few seconds
    assert {k: len(v) for k, v in datasets.items()} == {"train": 10000, "val": 200, "test": 200}
    assert (cache_home / "shapes/default/images/train/002000.png").is_file()


def test_unknown_dataset_type_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError) as err:
        ShapesCaptionBuilder.default_config("defualt")
    assert "did you mean 'default'" in str(err.value)
    with pytest.raises(UnknownNameError, match="default"):
        load_dataset("shapes_caption", type="coco")


def test_unknown_split_and_bad_generator_keys_are_named() -> None:
    builder = ShapesCaptionBuilder(small_config())
    builder.prepare()
    builder.build_processors()
    with pytest.raises(UnknownNameError, match="train, val|test, train, val"):
        builder.build_split("dev")
    bad = ShapesCaptionBuilder(OmegaConf.merge(small_config(), {"build_info": {"generator": {"n_train": 3}}}))
    with pytest.raises(ConfigError, match="build_info.generator.n_train"):
        bad.prepare()
