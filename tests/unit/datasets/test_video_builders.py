"""The video builders (MSR-VTT, MSVD, DiDeMo) and the video processors, on tiny MPEG-4 fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lavis.common.errors import LavisError
from lavis.common.registry import registry
from lavis.datasets.builders.real_builder import DatasetFilesMissing
from lavis.processors.video_processors import BlipVideoEvalProcessor, BlipVideoTrainProcessor, frame_indices
from tests.unit.datasets.real_formats import LAYOUTS, write_files

SMALL = {"train": {"name": "blip_video_train", "image_size": 16, "num_frames": 4},
         "eval": {"name": "blip_video_eval", "image_size": 16, "num_frames": 4}}


def build(name: str, cache_home: Path, dtype: str = "default", write: bool = True) -> dict:
    if write:
        write_files(cache_home, LAYOUTS[name]())
    cls = registry.get_builder_class(name)
    cfg = OmegaConf.merge(cls.default_config(dtype).datasets[name], {"vis_processor": SMALL})
    return cls(cfg).build_datasets()


def test_frame_indices_are_spread_uniformly() -> None:
    assert frame_indices(100, 4) == [12, 37, 62, 87]
    assert frame_indices(3, 6) == [0, 0, 1, 1, 2, 2]  # a short video repeats frames


def test_msrvtt_retrieval_train_per_caption_eval_per_video(cache_home: Path) -> None:
    splits = build("msrvtt", cache_home)
    train, test = splits["train"], splits["test"]
    assert len(train) == 2 and [r["video"] for r in train.annotation] == ["video0.mp4"] * 2
    batch = train.collater([train[0], train[1]])
    assert batch["video"].shape == (2, 3, 4, 16, 16) and batch["image_id"].tolist() == [0, 0]
    assert batch["text_input"] == ["a man is cooking 0", "a man is cooking 1"]
    assert len(test) == 1 and test.text == ["a man is cooking", "someone cooks", "a person cooks food"]
    assert test.img2txt == {0: [0, 1, 2]} and test.txt2img == {0: 0, 1: 0, 2: 0}
    clip = test[0]["video"]
    means = [clip[:, t].mean().item() for t in range(4)]
    assert means == sorted(means)  # the fixture brightens over time: frames come in order


def test_msrvtt_qa_labels_from_ans2label(cache_home: Path) -> None:
    val = build("msrvtt", cache_home, "qa")["val"]
    batch = val.collater([val[0], val[1]])
    assert batch["answer"] == ["cooking", "dancing"] and batch["label"].tolist() == [0, -1]
    assert batch["text_input"] == ["what is a man doing?"] * 2


def test_msvd_avi_and_didemo(cache_home: Path) -> None:
    msvd = build("msvd", cache_home)
    assert msvd["val"][0]["video"].shape == (3, 4, 16, 16)
    didemo = build("didemo", cache_home)
    assert set(didemo) == {"train", "val", "test"} and didemo["train"][0]["video"].shape == (3, 4, 16, 16)


def test_a_broken_video_is_skipped_and_missing_videos_name_the_videos_command(cache_home: Path) -> None:
    write_files(cache_home, LAYOUTS["didemo"]())
    broken = cache_home / "didemo/videos/10015567@N08_3655084291.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really")
    train = build("didemo", cache_home, write=False)["train"]
    assert train[0] is None and train.skipped == 1 and str(broken) in train.skipped_paths[0]
    for video in (cache_home / "didemo/videos").iterdir():
        video.unlink()
    with pytest.raises(DatasetFilesMissing) as err:
        build("didemo", cache_home, write=False)
    msg = str(err.value)
    assert f"videos missing: {cache_home / 'didemo/videos'}" in msg
    assert "python -m lavis.datasets.download didemo --only videos" in msg


def test_train_clip_shares_one_crop_across_frames() -> None:
    frames = torch.zeros(4, 3, 24, 32, dtype=torch.uint8)
    frames[:, 0, :, :16] = 200  # the same red left half in every frame
    torch.manual_seed(0)
    out = BlipVideoTrainProcessor(image_size=16, num_frames=4)(frames)
    assert out.shape == (3, 4, 16, 16)
    assert all(torch.equal(out[:, 0], out[:, t]) for t in range(1, 4))
    assert BlipVideoEvalProcessor(image_size=8, num_frames=4)(frames).shape == (3, 4, 8, 8)


def test_without_decord_the_error_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "decord", None)
    with pytest.raises(LavisError, match="pip install decord"):
        BlipVideoEvalProcessor()(tmp_path / "clip.mp4")
