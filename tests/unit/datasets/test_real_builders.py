"""The builders of the real data sets on small fixtures in the published formats
(tests/unit/datasets/real_formats.py): what each split holds, what an item and a batch hold, lazy
image loading, skipped unreadable images, and the errors for missing files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from lavis.common.config import Config
from lavis.common.errors import ConfigError
from lavis.common.registry import registry
from lavis.datasets.builders.real_builder import DatasetFilesMissing
from lavis.datasets.torch_datasets.image_text_datasets import (
    ImageCaptionEvalDataset,
    ImageTextTrainDataset,
    RetrievalEvalDataset,
)
from lavis.datasets.torch_datasets.media_dataset import TooManySkipped
from tests.unit.datasets.real_formats import LAYOUTS, write_files

SMALL = {"train": {"name": "blip_image_train", "image_size": 16}, "eval": {"name": "blip_image_eval", "image_size": 16}}


def build(name: str, cache_home: Path, dtype: str = "default", write: bool = True, **build_info) -> dict:
    """Every split of ``name`` built from its shipped config, with the fixture in the cache root."""
    if write:
        write_files(cache_home, LAYOUTS[name]())
    cls = registry.get_builder_class(name)
    cfg = OmegaConf.merge(cls.default_config(dtype).datasets[name], {"vis_processor": SMALL, "build_info": build_info})
    return cls(cfg).build_datasets()


def batch_of(dataset, n: int = 4) -> dict:
    return dataset.collater([dataset[i] for i in range(min(n, len(dataset)))])


# ------------------------------------------------------------------------------------------- image-text
def test_coco_captions_train_per_caption_and_eval_per_image_with_ground_truth(cache_home: Path) -> None:
    splits = build("coco", cache_home)
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert type(train) is ImageTextTrainDataset and type(val) is ImageCaptionEvalDataset
    assert len(train) == 4 and len(val) == 2 and len(test) == 2
    batch = batch_of(train)
    assert batch["image"].shape == (4, 3, 16, 16)
    assert batch["text_input"][0] == "a picture of a photo number 9 caption 1"
    assert batch["image_id"].tolist() == [0, 0, 1, 1]  # the two captions of an image share its id
    assert val.gt_path == cache_home / "coco_gt/coco_karpathy_val_gt.json"
    eval_batch = batch_of(val)
    assert eval_batch["image_id"].tolist() == [42, 73] and eval_batch["instance_id"] == ["0", "1"]
    assert "text_input" not in eval_batch


def test_coco_retrieval_keeps_captions_as_attributes(cache_home: Path) -> None:
    test = build("coco", cache_home, "retrieval")["test"]
    assert type(test) is RetrievalEvalDataset and len(test) == 2
    assert len(test.text) == 10 and test.text[0] == "test image 74 caption 0"
    assert test.img2txt[1] == [5, 6, 7, 8, 9] and test.txt2img[7] == 1
    assert batch_of(test)["index"].tolist() == [0, 1]


def test_flickr30k_retrieval(cache_home: Path) -> None:
    splits = build("flickr30k", cache_home)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert splits["val"].img2txt == {0: [0, 1, 2, 3, 4]}
    assert batch_of(splits["train"])["image"].shape == (2, 3, 16, 16)


def test_nocaps_keeps_each_image_domain_and_scores_val_only(cache_home: Path) -> None:
    splits = build("nocaps", cache_home)
    assert set(splits) == {"val", "test"}
    val, test = splits["val"], splits["test"]
    assert val.gt_path == cache_home / "nocaps/annotations/nocaps_val_4500_captions.json" and test.gt_path is None
    batch = batch_of(val)
    assert batch["image_id"].tolist() == [0, 1, 2]
    assert batch["domain"] == ["in-domain", "near-domain", "out-domain"]
    assert test[0]["domain"] == "out-domain"


# ------------------------------------------------------------------------------------------- VQA
def test_vqav2_train_soft_scores_and_eval_answer_list(cache_home: Path) -> None:
    splits = build("vqav2", cache_home)
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert len(train) == 3  # vqa_train.json + vqa_val.json, as LAVIS trains
    item = train[0]
    assert item["answers"] == ["net", "netting", "mesh"] and item["weights"] == pytest.approx([0.6, 0.3, 0.1])
    assert item["text_input"] == "what is in picture 9000?"
    batch = batch_of(train)
    assert batch["answer"] == ["net", "netting", "mesh", "yes", "2", "3"]
    assert batch["n_answers"].tolist() == [3, 1, 2]
    assert batch["weight"].tolist() == pytest.approx([0.6, 0.3, 0.1, 1.0, 0.7, 0.3])
    assert val.answer_list == ["net", "yes", "no", "2", "3"] and test.answer_list == val.answer_list
    eval_batch = batch_of(val)
    assert eval_batch["question_id"].tolist() == [42000, 42001] and eval_batch["answers"][1] == ["no"] * 10
    assert "answers" not in test[0] and test[0]["question_id"] == 1000


def test_okvqa_reads_the_vqa_format(cache_home: Path) -> None:
    splits = build("okvqa", cache_home)
    assert splits["train"][0]["answers"] == ["racing", "race"]
    assert splits["val"].answer_list == ["racing", "race", "beach"]


def test_aokvqa_direct_answers_and_multiple_choice(cache_home: Path) -> None:
    splits = build("aokvqa", cache_home)
    train = splits["train"]
    assert train.annotation[0]["image"] == "train2017/000000299207.jpg"  # derived: the original has no path
    assert train[0]["answers"] == ["cab", "taxi"] and train[0]["weights"] == pytest.approx([0.8, 0.2])
    batch = batch_of(splits["val"])
    assert batch["choices"] == [["skateboarder", "train", "delivery", "cab"]]
    assert batch["correct_choice_idx"].tolist() == [3] and batch["question_id"] == ["22jbM6gDxdaMaunuzgrsBB"]
    test_item = splits["test"][0]
    assert "correct_choice_idx" not in test_item and "answers" not in test_item and len(test_item["choices"]) == 4


def test_gqa_reads_the_official_dict_and_lavis_list_layouts(cache_home: Path) -> None:
    splits = build("gqa", cache_home)
    assert set(splits) == {"train", "val", "testdev"}
    train = splits["train"]
    assert [r["image"] for r in train.annotation] == ["2354786.jpg", "2354786.jpg"]
    assert train[1]["answers"] == ["pipe"] and train[1]["weights"] == [1.0]
    assert batch_of(splits["testdev"])["answers"] == [["red"]]


# ------------------------------------------------------------------------------------------- pairs, classes
def test_nlvr2_two_images_per_sample(cache_home: Path) -> None:
    splits = build("nlvr2", cache_home)
    assert set(splits) == {"train", "dev", "test"}
    batch = batch_of(splits["test"])
    assert batch["image0"].shape == batch["image1"].shape == (2, 3, 16, 16)
    assert batch["label"].tolist() == [1, 0]
    assert not torch.equal(batch["image0"][0], batch["image1"][0])


def test_snli_ve_labels(cache_home: Path) -> None:
    batch = batch_of(build("snli_ve", cache_home)["dev"])
    assert batch["label"].tolist() == [2, 1, 0] and batch["image_id"] == ["3173418563"] * 3


def test_imagenet_folders_and_class_names(cache_home: Path) -> None:
    val = build("imagenet", cache_home)["val"]
    assert val.classes == ["n01440764", "n01443537"] and val.classnames == ["tench", "goldfish"]
    assert batch_of(val)["label"].tolist() == [0, 0, 1, 1]


# ------------------------------------------------------------------------------------------- laziness, skipping
def test_images_are_opened_in_getitem_not_at_build_time(cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(str(fp)) or real_open(fp, *a, **k))
    splits = build("coco", cache_home)
    assert opened == []
    splits["val"][1]
    assert opened == [str(cache_home / "coco/images/val2014/COCO_val2014_000000000073.jpg")]


def test_training_items_are_read_by_the_train_processor_without_pil(cache_home: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The training processor reads its JPEGs itself (``read``: torchvision's decoder, a uint8
    tensor), so the data set hands it no PIL image; the item is what the processor makes of the path."""
    from PIL import Image

    train = build("coco", cache_home)["train"]
    path = cache_home / "coco/images/train2014/COCO_train2014_000000000009.jpg"
    assert train.vis_processor.read(path).dtype == torch.uint8
    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(str(fp)) or real_open(fp, *a, **k))
    torch.manual_seed(0)
    item = train[0]["image"]
    assert opened == []
    torch.manual_seed(0)
    assert torch.equal(item, train.vis_processor(path))


def test_an_unreadable_image_is_logged_skipped_and_counted(cache_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_files(cache_home, LAYOUTS["coco"]())
    bad = cache_home / "coco/images/val2014/COCO_val2014_000000000042.jpg"
    bad.write_bytes(b"not a jpeg")
    val = build("coco", cache_home, write=False, max_skipped=1)["val"]
    with caplog.at_level(logging.WARNING, logger="lavis"):
        assert val[0] is None
    assert val.skipped == 1 and str(bad) in caplog.text and "cannot decode" in caplog.text
    batch = val.collater([val[0], val[1]])  # a second epoch reads the bad item again
    assert batch["image_id"].tolist() == [73]  # the skipped item is dropped
    assert val.skipped == 1  # an item counts once, however often it is read


def test_past_max_skipped_it_is_an_error_naming_the_last_paths(cache_home: Path) -> None:
    write_files(cache_home, LAYOUTS["coco"]())
    missing = cache_home / "coco/images/train2014/COCO_train2014_000000000025.jpg"
    missing.unlink()
    train = build("coco", cache_home, write=False, max_skipped=1)["train"]
    assert train[2] is None  # first skip: within the limit
    assert train[2] is None and train.skipped == 1
    with pytest.raises(TooManySkipped, match="max_skipped=1") as err:
        train[3]
    assert str(missing) in str(err.value) and "python -m lavis.datasets.download --list" in str(err.value)


def test_the_skip_count_includes_dataloader_workers(cache_home: Path) -> None:
    write_files(cache_home, LAYOUTS["coco"]())
    (cache_home / "coco/images/train2014/COCO_train2014_000000000009.jpg").write_bytes(b"\xff\xd8 truncated")
    train = build("coco", cache_home, write=False)["train"]
    loader = DataLoader(train, batch_size=4, num_workers=1, collate_fn=train.collater)
    (batch,) = list(loader)
    assert batch["image_id"].tolist() == [1, 1] and train.skipped == 2


# ------------------------------------------------------------------------------------------- missing files, config
def test_missing_annotations_name_only_annotations_and_their_command(cache_home: Path) -> None:
    files = LAYOUTS["vqav2"]()
    write_files(cache_home, {k: v for k, v in files.items() if not k.endswith("answer_list.json")})
    with pytest.raises(DatasetFilesMissing) as err:
        build("vqav2", cache_home, write=False)
    msg = str(err.value)
    assert str(cache_home / "coco/annotations/answer_list.json") in msg
    assert "python -m lavis.datasets.download vqav2 --only annotations" in msg and "images missing" not in msg


def test_missing_images_name_only_images_and_their_command(cache_home: Path) -> None:
    write_files(cache_home, {k: v for k, v in LAYOUTS["nocaps"]().items() if not k.startswith("nocaps/images")})
    (cache_home / "nocaps/annotations/nocaps_test_image_info.json").unlink()  # comes with the images part
    with pytest.raises(DatasetFilesMissing) as err:
        build("nocaps", cache_home, write=False)
    msg = str(err.value)
    assert f"images missing: {cache_home / 'nocaps/images'}, {cache_home / 'nocaps/annotations/nocaps_test_image_info.json'}" in msg
    assert "python -m lavis.datasets.download nocaps --only images" in msg and "annotations missing" not in msg


def test_nothing_there_names_both_kinds_and_the_full_command(cache_home: Path) -> None:
    with pytest.raises(DatasetFilesMissing) as err:
        build("snli_ve", cache_home, write=False)
    msg = str(err.value)
    assert "annotations missing" in msg and "images missing" in msg
    assert msg.rstrip().endswith("fetch them with: python -m lavis.datasets.download snli_ve")
    with pytest.raises(DatasetFilesMissing, match="image-net.org"):
        build("imagenet", cache_home, write=False)


def test_build_info_values_are_checked_with_the_config() -> None:
    cfg = {"datasets": {"coco": {"type": "default", "build_info": {"format": "captions", "max_skipped": -1,
                                                                   "annotations": {"train": {"answer_list": "a.json"}}}}},
           "run": {"task": "captioning"}}
    with pytest.raises(ConfigError) as err:
        Config.from_dict(cfg)
    problems = "\n".join(err.value.problems)
    assert "datasets.coco.build_info.format: 'captions' is not one of 'caption', 'retrieval'" in problems
    assert "datasets.coco.build_info.max_skipped: must be >= 0" in problems
    assert "datasets.coco.build_info.annotations.train.answer_list: not read by COCOBuilder" in problems
