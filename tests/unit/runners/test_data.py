"""Sampling and per-sample seeding: shards, resume offsets, worker-independent augmentation."""

import random

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, default_collate

from lavis.common.errors import ConfigError
from lavis.runners.data import (
    ResumableDistributedSampler,
    SeededDataset,
    LoaderSettings,
    ShardedEvalSampler,
    auto_workers,
    batch_size_of,
    collate_fn_for,
    concat_splits,
    make_loader,
    mix_seed,
    move_to_device,
)
from tests.toy.components import ToyDataset


def test_train_shards_are_disjoint_cover_everything_and_equal_in_size():
    n, world = 21, 4
    samplers = [ResumableDistributedSampler(n, world, r, shuffle=True, seed=3) for r in range(world)]
    for s in samplers:
        s.set_epoch(5)
    shares = [[i for _, i in s] for s in samplers]
    assert {len(s) for s in shares} == {6}  # ceil(21 / 4), padded by wrapping around
    flat = [i for s in shares for i in s]
    assert set(flat) == set(range(n))
    assert len(flat) - len(set(flat)) == 24 - 21  # only the padding repeats
    assert all(e == 5 for s in samplers for e, _ in s)  # the epoch travels with each index


def test_shuffle_depends_on_seed_and_epoch_only():
    a = ResumableDistributedSampler(50, shuffle=True, seed=1)
    b = ResumableDistributedSampler(50, shuffle=True, seed=1)
    assert a.indices(0) == b.indices(0)
    assert a.indices(0) != a.indices(1)
    assert sorted(a.indices(1)) == list(range(50))
    assert ResumableDistributedSampler(50, shuffle=False).indices(3) == list(range(50))


def test_start_offset_resumes_inside_an_epoch():
    s = ResumableDistributedSampler(40, 2, 1, shuffle=True, seed=9)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start=7)
    assert list(s) == full[7:]
    assert len(s) == len(full) - 7


def test_eval_shards_give_every_sample_to_exactly_one_rank():
    n, world = 33, 2
    shares = [list(ShardedEvalSampler(n, world, r)) for r in range(world)]
    assert [len(s) for s in shares] == [17, 16]
    assert sorted(shares[0] + shares[1]) == list(range(n))
    assert len(ShardedEvalSampler(3, 4, 3)) == 0  # more ranks than items: some get nothing


def test_seeded_items_depend_only_on_seed_epoch_index_and_leave_global_rng_alone():
    ds = SeededDataset(ToyDataset(10, 4, 3, split_seed=0, noise=1.0), seed=11)
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    a = ds[(1, 4)]["x"]
    _ = ds[(1, 3)]["x"]  # order does not matter
    assert torch.equal(ds[(1, 4)]["x"], a)
    assert not torch.equal(ds[(2, 4)]["x"], a)  # a new epoch draws new augmentation
    assert not torch.equal(SeededDataset(ds.dataset, seed=12)[(1, 4)]["x"], a)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert random.getstate() == before[2]
    assert mix_seed(1, 2, 3) != mix_seed(1, 3, 2)


def test_loader_output_does_not_depend_on_num_workers():
    data = SeededDataset(ToyDataset(37, 4, 3, split_seed=0, noise=1.0), seed=5)

    def batches(workers):
        sampler = ResumableDistributedSampler(len(data), 1, 0, shuffle=True, seed=5)
        sampler.set_epoch(3, start=4)
        return list(make_loader(data, sampler, 8, LoaderSettings(workers), seed=0))

    b0, b2 = batches(0), batches(2)
    assert len(b0) == len(b2) == 5  # (37 - 4) items in batches of 8
    for x, y in zip(b0, b2):
        assert torch.equal(x["x"], y["x"]) and x["instance_id"] == y["instance_id"]


def test_loader_settings_of_a_run(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert LoaderSettings.for_run(None, 2, cpu) == LoaderSettings(0, False, 2)  # CPU: the step's threads use the cores
    assert LoaderSettings.for_run(3, 4, cpu) == LoaderSettings(3, False, 4)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert LoaderSettings.for_run(None, 2, gpu) == LoaderSettings(3, True, 2)  # 16 CPUs / 4 ranks - 1, pinned
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert auto_workers(gpu) == 8  # at most 8
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0}, raising=False)
    assert auto_workers(gpu) == 0 and auto_workers(cpu) == 0


def test_the_runner_builds_its_loaders_with_its_settings(tmp_path):
    from lavis.runners.runner_epoch import RunnerEpoch
    from tests.toy.components import build_runner

    runner, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path), max_epoch=1, num_workers=1, prefetch_factor=3)
    loaders = [runner.eval_loader("toy", "val")]
    runner.train_sampler  # builds the training loader
    loaders.append(runner._train_loader)
    for loader in loaders:
        assert (loader.num_workers, loader.persistent_workers, loader.prefetch_factor, loader.pin_memory) == (1, True, 3, False)
    first = [b["instance_id"] for b in loaders[0]]
    assert [b["instance_id"] for b in loaders[0]] == first  # the same worker serves the next pass
    default, _ = build_runner(RunnerEpoch, output_dir=str(tmp_path / "d"), max_epoch=1)
    loader = default.eval_loader("toy", "val")
    assert (loader.num_workers, loader.persistent_workers, loader.prefetch_factor) == (0, False, None)  # on a CPU


def test_loader_does_not_draw_from_the_global_generator():
    data = SeededDataset(ToyDataset(8, 4, 3, split_seed=0, noise=1.0), seed=5)
    loader = make_loader(data, ResumableDistributedSampler(8), 4, LoaderSettings(), seed=0)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    list(loader)
    assert torch.equal(torch.get_rng_state(), state)


def test_collater_is_found_through_wrappers():
    toy = ToyDataset(4, 2, 2, split_seed=0)
    assert collate_fn_for(SeededDataset(ConcatDataset([toy, toy]), 0)) == toy.collater
    assert collate_fn_for(SeededDataset(torch.utils.data.TensorDataset(torch.zeros(2)), 0)) is default_collate


def test_concat_splits_names_what_exists():
    toy = ToyDataset(4, 2, 2, split_seed=0)
    assert len(concat_splits({"a": {"train": toy}, "b": {"train": toy, "val": toy}}, ["train"])) == 8
    with pytest.raises(ConfigError, match=r"a: train.*b: train, val"):
        concat_splits({"a": {"train": toy}, "b": {"train": toy, "val": toy}}, ["trian"])


def test_batch_helpers():
    batch = {"ids": [1, 2, 3], "x": torch.zeros(3, 2), "nested": [torch.ones(1)]}
    assert batch_size_of(batch) == 3
    assert batch_size_of({"text": ["a", "b"]}) == 2
    moved = move_to_device(batch, torch.device("cpu"))
    assert moved["ids"] == [1, 2, 3] and torch.equal(moved["nested"][0], torch.ones(1))
