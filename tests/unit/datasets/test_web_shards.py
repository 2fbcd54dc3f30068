"""Web-scale sets from webdataset shards: the index, random access, skipping, and the chain from
the download command's verification to a builder and a training run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from lavis.common.registry import registry
from lavis.datasets.builders.real_builder import DatasetFilesMissing
from lavis.datasets.builders.web_builders import expand_shards
from lavis.datasets.torch_datasets.media_dataset import TooManySkipped
from lavis.datasets.torch_datasets.shard_dataset import (
    WebShardDataset,
    _index_cache_path,
    index_shard,
    load_shard_index,
    split_member_name,
)
from lavis.processors.blip_processors import BlipImageEvalProcessor
from tests.unit.datasets.test_download_to_builder import run_command
from tests.unit.datasets.web_shards import caption, write_shards


def test_member_names_split_at_the_first_dot_of_the_file_name():
    assert split_member_name("000010042.jpg") == ("000010042", "jpg")
    assert split_member_name("part/a.b.seg.PNG") == ("part/a", "b.seg.png")


def test_index_holds_complete_samples_and_reads_each_one_back(tmp_path):
    shards = write_shards(tmp_path / "s", shards=2, per_shard=3, incomplete=True)
    index = index_shard(shards[0])
    assert len(index) == 3 and index.incomplete == 1
    ds = WebShardDataset(BlipImageEvalProcessor(image_size=16), shards=shards)
    assert len(ds) == 6 and ds.incomplete == 2
    items = [ds[i] for i in range(6)]
    assert [it["text_input"] for it in items] == [caption(s, i) for s in range(2) for i in range(3)]
    assert [it["image_id"] for it in items] == list(range(6))
    assert items[0]["image"].shape == (3, 16, 16)
    # sample 0 of shard 0 is a red square, sample 1 green: the pixels come from the right member
    red, green = items[0]["image"].mean(dim=(1, 2)), items[1]["image"].mean(dim=(1, 2))
    assert red[0] > red[1] and green[1] > green[0]


def test_the_index_is_cached_and_rebuilt_when_the_shard_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("LAVIS_CACHE_HOME", str(tmp_path / "cache"))
    (shard,) = write_shards(tmp_path / "s", shards=1, per_shard=3)
    first = load_shard_index(shard)
    cached = _index_cache_path(shard)
    assert cached.is_file() and str(tmp_path / "cache") in str(cached)
    with np.load(cached, allow_pickle=False) as z:
        assert z["image_offset"].tolist() == first.image_offset.tolist()
    write_shards(tmp_path / "s", shards=1, per_shard=5)  # same name, new content
    os.utime(shard, ns=(1, 1))
    assert len(load_shard_index(shard)) == 5
    cached.write_bytes(b"broken")  # an unreadable cache is rebuilt, not an error
    assert len(load_shard_index(shard)) == 5


def test_an_undecodable_image_is_skipped_and_counted_then_too_many_is_an_error(tmp_path):
    shards = write_shards(tmp_path / "s", shards=1, per_shard=4, corrupt=(0, 2))
    ds = WebShardDataset(BlipImageEvalProcessor(image_size=16), shards=shards, max_skipped=1)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=ds.collater)))
    assert batch["text_input"] == [caption(0, 0), caption(0, 1), caption(0, 3)]
    assert ds.skipped == 1 and "00000.tar[2].jpg" in ds.skipped_paths[0]
    strict = WebShardDataset(BlipImageEvalProcessor(image_size=16), shards=shards, max_skipped=0)
    with pytest.raises(TooManySkipped, match="00000.tar"):
        strict[2]


def test_workers_read_the_same_samples_as_the_main_process(tmp_path):
    shards = write_shards(tmp_path / "s", shards=2, per_shard=3)
    ds = WebShardDataset(BlipImageEvalProcessor(image_size=16), shards=shards)
    ds[0]  # opens a handle in this process before the workers fork
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=ds.collater)
    texts = [t for batch in loader for t in batch["text_input"]]
    assert texts == [caption(s, i) for s in range(2) for i in range(3)]


def test_shard_storage_may_be_a_folder_a_brace_pattern_or_a_list(tmp_path, monkeypatch):
    monkeypatch.setenv("LAVIS_CACHE_HOME", str(tmp_path))
    paths = write_shards(tmp_path / "web" / "shards", shards=3, per_shard=1)
    assert expand_shards("web/shards") == paths
    assert expand_shards("web/shards/{00001..00002}.tar") == paths[1:]
    assert expand_shards([str(paths[2]), "web/shards/00000.tar"]) == [paths[2], paths[0]]


def _builder(name: str):
    cls = registry.get_builder_class(name)
    cfg = OmegaConf.merge(cls.default_config().datasets[name], {"vis_processor": {"train": {"image_size": 16}}})
    return cls(cfg)


@pytest.mark.parametrize("name", ["cc3m", "cc12m", "laion400m"])
def test_missing_shards_name_the_download_command(name, cache_home, capsys):
    with pytest.raises(DatasetFilesMissing) as err:
        _builder(name).build_datasets()
    assert f"no *.tar shards in {cache_home / name / 'shards'}" in str(err.value)
    command = f"python -m lavis.datasets.download {name}"
    assert str(err.value).endswith(command)
    if name != "cc12m":  # (cc12m's URL list is a plain download: that command is run against a mirror elsewhere)
        assert run_command(command + " --no-progress") == 3  # a manual step: it says what to do
        err_text = capsys.readouterr().err
        assert "img2dataset --url_list" in err_text and f"--output_folder {cache_home / name / 'shards'}" in err_text


def test_unverified_shards_ask_for_the_download_commands_verification_which_then_lets_them_build(cache_home):
    write_shards(cache_home / "cc3m" / "shards", shards=2, per_shard=3)
    with pytest.raises(DatasetFilesMissing) as err:
        _builder("cc3m").build_datasets()
    command = str(err.value).rsplit("with: ", 1)[1]
    assert command == "python -m lavis.datasets.download cc3m --only shards"
    assert "2 shards" in str(err.value)
    assert run_command(command + " --no-progress") == 0  # verifies and records the shards
    train = _builder("cc3m").build_datasets()["train"]
    batch = next(iter(DataLoader(train, batch_size=6, collate_fn=train.collater)))
    assert batch["image"].shape == (6, 3, 16, 16) and batch["text_input"][0] == "a picture of " + caption(0, 0)
    # a shard replaced after verification must be verified again
    write_shards(cache_home / "cc3m" / "shards", shards=1, per_shard=5)
    with pytest.raises(DatasetFilesMissing, match="00000.tar"):
        _builder("cc3m").build_datasets()


def test_blip_caption_pretrains_on_shards_and_resumes_exactly(cache_home, tmp_path, one_thread):
    """train.py on CC3M-layout shards: resuming from the first epoch's checkpoint ends with the weights of
    the uninterrupted run."""
    import torch

    from lavis.cli import train_main

    write_shards(cache_home / "cc3m" / "shards", shards=2, per_shard=4)
    assert run_command("python -m lavis.datasets.download cc3m --only shards --no-progress") == 0
    common = ["model.arch=blip_caption", "model.model_type=tiny", "datasets.cc3m.vis_processor.train.image_size=32",
              "run.task=captioning", "run.device=cpu", "run.num_workers=0", "run.batch_size_train=4",
              "run.valid_splits=[]", "run.test_splits=[]", "run.progress_bar=false", "run.tensorboard=false",
              "run.init_lr=1e-3"]
    cfg = {"model": {"arch": "blip_caption"}, "datasets": {"cc3m": {}}, "run": {"task": "captioning"}}
    path = tmp_path / "cfg.yaml"
    OmegaConf.save(OmegaConf.create(cfg), path)

    def train(out: Path, *extra: str) -> dict:
        return train_main(["--cfg-path", str(path), "--options", *common, f"run.output_dir={out}", *extra])

    full = train(tmp_path / "full", "run.max_epoch=2")
    assert full["train"]["global_step"] == 4  # 8 samples, batch 4, 2 epochs
    epoch0 = tmp_path / "full" / "checkpoint_0.pth"  # saved at the end of the first epoch
    train(tmp_path / "resumed", "run.max_epoch=2", f"run.resume_ckpt_path={epoch0}")
    a = torch.load(tmp_path / "full" / "checkpoint_latest.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint_latest.pth", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
