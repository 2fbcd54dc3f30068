"""Resuming into another output folder brings the best checkpoint so far along, so that the test
splits are scored on it when the best epoch came before the resume."""

from __future__ import annotations

from pathlib import Path

from lavis.runners.checkpointing import adopt_best_checkpoint


def _run(folder: Path, best: bytes) -> Path:
    folder.mkdir()
    (folder / "checkpoint_best.pth").write_bytes(best)
    resumed = folder / "checkpoint_1.pth"
    resumed.write_bytes(b"epoch 1")
    return resumed


def test_the_old_best_checkpoint_comes_along(tmp_path):
    resumed = _run(tmp_path / "old", b"epoch 0")
    new = tmp_path / "new"
    new.mkdir()
    adopt_best_checkpoint(resumed, new, best_epoch=0)
    assert (new / "checkpoint_best.pth").read_bytes() == b"epoch 0"


def test_nothing_is_taken_without_a_best_epoch_or_over_a_newer_best(tmp_path):
    resumed = _run(tmp_path / "old", b"epoch 0")
    new = tmp_path / "new"
    new.mkdir()
    adopt_best_checkpoint(resumed, new, best_epoch=None)
    assert not (new / "checkpoint_best.pth").exists()
    (new / "checkpoint_best.pth").write_bytes(b"epoch 2")
    adopt_best_checkpoint(resumed, new, best_epoch=2)
    assert (new / "checkpoint_best.pth").read_bytes() == b"epoch 2"
    adopt_best_checkpoint(resumed, resumed.parent, best_epoch=0)  # the same folder: left as it is
    assert (resumed.parent / "checkpoint_best.pth").read_bytes() == b"epoch 0"
