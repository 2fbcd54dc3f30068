"""Data loading for runners: resumable distributed sampling and per-sample seeded randomness.

Two properties make training reproducible and resumable:

- **Where a rank is in an epoch** is fully described by ``(epoch, samples consumed)``: the order
  of an epoch is a permutation drawn from a generator seeded with ``seed + epoch``, and
  :class:`ResumableDistributedSampler` can start anywhere inside it.
- **What an item looks like** depends only on ``(seed, epoch, index)``: :class:`SeededDataset`
  produces item ``i`` of epoch ``e`` under Python, NumPy and torch generators seeded from those
  three numbers (the global generators are restored afterwards), so random augmentation gives the
  same result whatever the number of workers, the rank that loads it or the resume position.

The samplers yield ``(epoch, index)`` keys and :class:`SeededDataset` unpacks them, so the epoch
travels with each index into worker processes.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence, Sized

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler
from torch.utils.data import default_collate

from lavis.common.errors import ConfigError

__all__ = [
    "EVAL_EPOCH",
    "mix_seed",
    "SeededDataset",
    "ResumableDistributedSampler",
    "ShardedEvalSampler",
    "collate_fn_for",
    "concat_splits",
    "LoaderSettings",
    "make_loader",
    "move_to_device",
    "batch_size_of",
]

EVAL_EPOCH = -1  # the epoch key of evaluation items
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. ``(seed, epoch, index)``); order matters."""
    x = 0x6A09E667F3BCC909
    for v in values:
        x = _splitmix64(x ^ (int(v) & _MASK64))
    return x & ((1 << 63) - 1)


class SeededDataset(Dataset):
    """Wrap ``dataset`` so that item ``i`` of epoch ``e`` is made under generators seeded from
    ``(seed, e, i)``. Keys are ``(epoch, index)`` pairs (from the samplers here) or plain indices
    (taken as evaluation items, epoch :data:`EVAL_EPOCH`).

    Python's ``random``, NumPy's global generator and torch's CPU generator are seeded for the
    duration of ``dataset[i]`` and restored afterwards, so the caller's random streams (dropout
    in the main process, for example) are not disturbed.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, index = key if isinstance(key, tuple) else (EVAL_EPOCH, key)
        seed = mix_seed(self.seed, epoch, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                np.random.seed(seed % (2**32))
                torch.default_generator.manual_seed(seed)
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

    def __getattr__(self, name: str) -> Any:  # collater, annotations, ... of the wrapped dataset
        if name == "dataset":  # not set yet (unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


class ResumableDistributedSampler(Sampler):
    """Training order: this rank's share of a seeded permutation, from any position in the epoch.

    The epoch's order is ``randperm(n)`` with a generator seeded by ``seed + epoch`` (or
    ``range(n)`` without shuffle), padded by wrapping around to a multiple of ``num_replicas``;
    rank ``r`` takes every ``num_replicas``-th index from ``r``. All ranks get the same number of
    items, so they run the same number of steps. Yields ``(epoch, index)`` keys.

    Call :meth:`set_epoch` before iterating; ``start`` skips that many of this rank's items.
    """

    def __init__(self, num_samples: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.n = int(num_samples)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0
        self.start = 0

    @property
    def per_rank(self) -> int:
        """Items each rank gets per epoch."""
        return math.ceil(self.n / self.num_replicas) if self.n else 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from this rank's item ``start`` on."""
        self.epoch, self.start = int(epoch), max(0, int(start))

    def order(self, epoch: int) -> list[int]:
        """The full (padded) order of ``epoch`` over all ranks."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        total = self.per_rank * self.num_replicas
        while idx and len(idx) < total:
            idx += idx[: total - len(idx)]
        return idx

    def indices(self, epoch: int) -> list[int]:
        """This rank's items of ``epoch`` (all of them, ignoring ``start``)."""
        return self.order(epoch)[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for i in self.indices(epoch)[self.start :]:
            yield (epoch, i)

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)


class ShardedEvalSampler(Sampler):
    """Evaluation order: rank ``r`` gets items ``r, r + W, r + 2W, ...`` with no padding, so every
    item is seen by exactly one rank (ranks may get one item more or less). Yields plain indices."""

    def __init__(self, num_samples: int, num_replicas: int = 1, rank: int = 0):
        self.n, self.num_replicas, self.rank = int(num_samples), int(num_replicas), int(rank)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))


def collate_fn_for(dataset: Dataset) -> Callable[[list], Any]:
    """The dataset's ``collater(samples)`` when it has one (looked through wrappers and
    concatenations: the first part's collater), else torch's ``default_collate``."""
    while True:
        collater = getattr(dataset, "collater", None)
        if callable(collater):
            return collater
        if isinstance(dataset, SeededDataset):
            dataset = dataset.dataset
        elif isinstance(dataset, ConcatDataset) and dataset.datasets:
            dataset = dataset.datasets[0]
        else:
            return default_collate


def dataset_len(dataset: Dataset, where: str) -> int:
    """The number of samples of ``dataset``; the runners need map-style data sets (with ``__len__``),
    so one without it is a ``TypeError`` that names ``where`` it came from."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{where}: {type(dataset).__name__} has no __len__; the runners need map-style data sets "
                        "(give the class a __len__ returning its number of samples)")
    return len(dataset)


def concat_splits(
    datasets: Mapping[str, Mapping[str, Dataset]], splits: Sequence[str], key: str = "run.train_splits"
) -> Dataset:
    """The concatenation of split ``s`` of every dataset that has it, for each ``s`` in ``splits``.

    Raises :class:`ConfigError` when nothing matches, listing the splits each dataset has.
    """
    parts = [ds[s] for s in splits for ds in datasets.values() if s in ds]
    if not parts:
        have = "; ".join(f"{name}: {', '.join(ds) or '(none)'}" for name, ds in datasets.items()) or "(no datasets)"
        raise ConfigError([f"{key}: {list(splits)} matches no split of the datasets ({have})"])
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


@dataclass(frozen=True)
class LoaderSettings:
    """How the runner's DataLoaders load: worker processes, pinned memory, batches prefetched.

    With workers, they are persistent (started once per loader, not once per epoch) and each
    keeps ``prefetch_factor`` batches ready; without, the main process loads each batch when asked.
    """

    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: int = 2

    @classmethod
    def for_run(cls, num_workers: int | None, prefetch_factor: int, device: torch.device) -> "LoaderSettings":
        """``run.num_workers`` (``None``: :func:`auto_workers`), pinned memory when the device is a
        GPU (so that the copy of each batch can overlap the step), ``run.prefetch_factor``."""
        workers = auto_workers(device) if num_workers is None else int(num_workers)
        return cls(workers, device.type == "cuda", int(prefetch_factor))


def auto_workers(device: torch.device) -> int:
    """Data-loader workers per process when ``run.num_workers`` is unset: on a GPU, the CPUs this
    process may use, shared among the local ranks (``$LOCAL_WORLD_SIZE``), less one for the main
    process, at most 8; on a CPU, 0 (the training step's threads already use the cores, so
    workers would only compete with it)."""
    if device.type != "cuda":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(8, cpus // local_ranks - 1))


def make_loader(dataset: Dataset, sampler: Sampler, batch_size: int, settings: LoaderSettings, seed: int) -> DataLoader:
    """A DataLoader over ``dataset`` (already a :class:`SeededDataset`) in ``sampler`` order, loading
    as ``settings`` say.

    Uses the dataset's collater and a private generator so that making an iterator never draws
    from the global torch generator. Persistent workers keep resuming exact: the sampler runs in
    the main process, and each item's randomness comes from its own key (:class:`SeededDataset`).
    """
    g = torch.Generator()
    g.manual_seed(seed)
    workers = settings.num_workers > 0
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=settings.num_workers,
        pin_memory=settings.pin_memory,
        collate_fn=collate_fn_for(dataset),
        drop_last=False,
        persistent_workers=workers,
        prefetch_factor=settings.prefetch_factor if workers else None,
        generator=g,
    )


def move_to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """``obj`` with every tensor inside (dicts, lists, tuples) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: move_to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not isinstance(obj, str):
        moved = [move_to_device(v, device, non_blocking) for v in obj]
        return type(obj)(moved) if not hasattr(obj, "_fields") else type(obj)(*moved)
    return obj


def batch_size_of(samples: Any) -> int:
    """Number of samples in a collated batch: first dimension of its first tensor (or list length)."""
    if isinstance(samples, torch.Tensor):
        return int(samples.shape[0]) if samples.ndim else 1
    if isinstance(samples, Mapping):
        for v in samples.values():
            if isinstance(v, torch.Tensor) and v.ndim:
                return int(v.shape[0])
        for v in samples.values():
            if isinstance(v, (list, tuple)):
                return len(v)
        return 0
    if isinstance(samples, (list, tuple)):
        return batch_size_of(samples[0]) if samples else 0
    return 0


def skipped_report(datasets: Mapping[str, Mapping[str, Any]], splits: list[str]) -> list[str]:
    """One line for each of ``splits`` of each data set that skipped items with unreadable media
    (``dataset.skipped`` > 0), with the count and its limit."""
    lines = []
    for name, by_split in datasets.items():
        for split in splits:
            dataset = by_split.get(split)
            skipped = getattr(dataset, "skipped", 0)
            if isinstance(skipped, int) and skipped > 0:
                lines.append(f"{name}/{split} has skipped {skipped} item(s) with unreadable media so far "
                             f"(build_info.max_skipped: {getattr(dataset, 'max_skipped', '?')})")
    return lines


def split_problems(datasets: Mapping[str, Mapping[str, Any]], train_splits: Sequence[str],
                   valid_splits: Sequence[str], test_splits: Sequence[str], evaluate_only: bool) -> list[str]:
    """``run.<key>: ...`` for each named split that no data set has (training splits only matter
    when training), listing the splits there are."""
    have = "; ".join(f"{n}: {', '.join(s) or '(none)'}" for n, s in datasets.items()) or "(no datasets)"
    problems = [f"run.{key}: {split!r} is not a split of any dataset ({have})"
                for key, splits in (("valid_splits", valid_splits), ("test_splits", test_splits))
                for split in splits if not any(split in s for s in datasets.values())]
    if not evaluate_only and not any(s in d for s in train_splits for d in datasets.values()):
        problems.append(f"run.train_splits: {list(train_splits)} matches no split of the datasets ({have})")
    return problems
