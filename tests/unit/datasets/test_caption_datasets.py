"""CaptionDataset / CaptionEvalDataset on a generated shapes folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO
from torch.utils.data import DataLoader

from lavis.datasets.torch_datasets.caption_datasets import CaptionDataset, CaptionEvalDataset, integer_image_id
from lavis.processors.blip_processors import BlipCaptionProcessor, BlipImageEvalProcessor, BlipImageTrainProcessor


def train_dataset(shapes_dir: Path, **train_kw) -> CaptionDataset:
    return CaptionDataset(
        BlipImageTrainProcessor(image_size=32, **train_kw), BlipCaptionProcessor(prompt="a picture of "),
        vis_root=shapes_dir, ann_paths=[shapes_dir / "captions/train.json"],
    )


def eval_dataset(shapes_dir: Path, split: str = "val") -> CaptionEvalDataset:
    return CaptionEvalDataset(
        BlipImageEvalProcessor(image_size=32), BlipCaptionProcessor(), vis_root=shapes_dir,
        ann_paths=[shapes_dir / f"captions/{split}.json"], gt_path=shapes_dir / f"captions/{split}_gt.json",
    )


def test_train_items(shapes_dir: Path, small_cfg) -> None:
    ds = train_dataset(shapes_dir)
    raw = json.loads((shapes_dir / "captions/train.json").read_text())
    assert len(ds) == small_cfg.num_train * 5 == len(raw)
    item = ds[7]
    assert set(item) == {"image", "text_input", "image_id"}
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["text_input"] == "a picture of " + raw[7]["caption"]
    # the five captions of an image share one integer id; ids count images 0, 1, ...
    assert [ds[i]["image_id"] for i in range(0, 15, 1)] == [0] * 5 + [1] * 5 + [2] * 5
    assert ds[len(ds) - 1]["image_id"] == small_cfg.num_train - 1
    assert isinstance(ds.vis_processor, BlipImageTrainProcessor)
    assert isinstance(ds.text_processor, BlipCaptionProcessor)


def test_train_collater_stacks_tensors_and_keeps_strings_as_lists(shapes_dir: Path) -> None:
    ds = train_dataset(shapes_dir)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=ds.collater)))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert isinstance(batch["text_input"], list) and len(batch["text_input"]) == 4
    assert batch["image_id"].tolist() == [0, 0, 0, 0]
    assert ds.collater([None, None]) == {}


def test_augmentation_follows_torch_global_rng(shapes_dir: Path) -> None:
    ds = train_dataset(shapes_dir, min_scale=0.3, horizontal_flip=True)
    torch.manual_seed(11)
    a = ds[3]["image"]
    torch.manual_seed(11)
    b = ds[3]["image"]
    c = ds[3]["image"]
    assert torch.equal(a, b) and not torch.equal(b, c)


@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_items_match_the_coco_ground_truth(shapes_dir: Path, split: str, small_cfg) -> None:
    ds = eval_dataset(shapes_dir, split)
    assert len(ds) == small_cfg.num_images(split)
    coco = COCO(str(ds.gt_path))
    raw = json.loads((shapes_dir / f"captions/{split}.json").read_text())
    for i in range(len(ds)):
        item = ds[i]
        assert set(item) == {"image", "image_id", "instance_id"}
        assert item["image"].shape == (3, 32, 32)
        assert isinstance(item["image_id"], int) and item["instance_id"] == str(i)
        gt_caps = [a["caption"] for a in coco.loadAnns(coco.getAnnIds(imgIds=item["image_id"]))]
        assert gt_caps == raw[i]["caption"]
    batch = ds.collater([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 32, 32)
    assert batch["image_id"].tolist() == [ds[0]["image_id"], ds[1]["image_id"]]
    assert batch["instance_id"] == ["0", "1"]


def test_eval_rejects_a_ground_truth_of_other_images(shapes_dir: Path) -> None:
    with pytest.raises(ValueError, match="not in the ground truth"):
        CaptionEvalDataset(vis_root=shapes_dir, ann_paths=[shapes_dir / "captions/val.json"],
                           gt_path=shapes_dir / "captions/test_gt.json")


def test_integer_image_ids_of_shapes_and_coco_files() -> None:
    assert integer_image_id({"image": "images/val/000042.png", "image_id": "val_000042"}) == 42
    assert integer_image_id({"image": "val2014/COCO_val2014_000000391895.jpg"}) == 391895
    assert integer_image_id({"image": "x.jpg", "image_id": 7}) == 7
    with pytest.raises(ValueError, match="integer image id"):
        integer_image_id({"image": "images/cat.png", "image_id": "cat"})


def test_clear_errors_for_missing_or_wrong_files(shapes_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="build_info.annotations"):
        CaptionDataset(ann_paths=[tmp_path / "missing.json"])
    ds = CaptionDataset(vis_root=tmp_path, ann_paths=[shapes_dir / "captions/train.json"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ds[0]
    wrong = CaptionDataset(vis_root=shapes_dir, ann_paths=[shapes_dir / "captions/val.json"])
    with pytest.raises(TypeError, match="eval-format"):
        wrong[0]
