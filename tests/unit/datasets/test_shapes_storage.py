"""Generated folders are written atomically, reused only when their manifest matches, and made
once when several processes ask at the same time."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

import lavis.datasets.synthetic.shapes as shapes
from lavis.common.errors import ConfigError
from lavis.datasets.synthetic.shapes import (
    MANIFEST_NAME, ShapesConfig, ensure_generated, lock_path, manifest_mismatch, read_manifest,
)

TINY = ShapesConfig(seed=1, num_train=6, num_val=3, num_test=2)


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


def test_manifest_records_seed_parameters_and_counts(tmp_path: Path) -> None:
    out = tmp_path / "data"
    assert ensure_generated(out, TINY) is True
    manifest = read_manifest(out)
    assert manifest["params"]["seed"] == 1 and manifest["params"]["num_train"] == 6
    assert manifest["params"]["image_size"] == 64 and manifest["format_version"] == shapes.FORMAT_VERSION
    assert manifest["counts"]["train"] == {"images": 6, "captions": 30, "questions": 24}
    assert manifest_mismatch(out, TINY) == []
    # only the data folder and its lock file are left next to it (no temporary folders)
    assert siblings(out) == [lock_path(out).name, "data"]


def test_matching_folder_is_reused_untouched(tmp_path: Path) -> None:
    out = tmp_path / "data"
    ensure_generated(out, TINY)
    stamp = (out / MANIFEST_NAME).stat().st_mtime_ns
    image = out / "images/train/000001.png"
    image_stamp = image.stat().st_mtime_ns
    assert ensure_generated(out, ShapesConfig(seed=1, num_train=6, num_val=3, num_test=2)) is False
    assert (out / MANIFEST_NAME).stat().st_mtime_ns == stamp and image.stat().st_mtime_ns == image_stamp
    assert ensure_generated(out, TINY, force=True) is True
    assert (out / MANIFEST_NAME).stat().st_mtime_ns != stamp


def test_mismatched_parameters_regenerate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "data"
    ensure_generated(out, TINY)
    bigger = ShapesConfig(seed=1, num_train=6, num_val=5, num_test=2)
    assert manifest_mismatch(out, bigger) == ["params.num_val: found 3, want 5"]
    with caplog.at_level("WARNING"):
        assert ensure_generated(out, bigger) is True
    assert "params.num_val" in caplog.text
    assert len(json.loads((out / "captions/val.json").read_text())) == 5
    assert read_manifest(out)["params"]["num_val"] == 5
    other_seed = ShapesConfig(seed=2, num_train=6, num_val=5, num_test=2)
    assert ensure_generated(out, other_seed) is True
    assert read_manifest(out)["params"]["seed"] == 2


def test_corrupt_manifest_regenerates(tmp_path: Path) -> None:
    out = tmp_path / "data"
    ensure_generated(out, TINY)
    (out / MANIFEST_NAME).write_text("{not json")
    assert ensure_generated(out, TINY) is True
    assert read_manifest(out)["params"]["seed"] == 1


def test_interrupted_generation_leaves_the_old_folder_and_no_debris(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "data"
    ensure_generated(out, TINY)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = shapes._write_split

    def fail_on_test(root, cfg, split, sampler):
        if split == "test":
            raise KeyboardInterrupt("simulated interruption")
        return real(root, cfg, split, sampler)

    monkeypatch.setattr(shapes, "_write_split", fail_on_test)
    with pytest.raises(KeyboardInterrupt):
        ensure_generated(out, ShapesConfig(seed=9, num_train=6, num_val=3, num_test=2))
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert siblings(out) == [lock_path(out).name, "data"]


def test_leftovers_of_a_killed_run_are_cleaned_up(tmp_path: Path) -> None:
    out = tmp_path / "data"
    (tmp_path / ".data.tmp-abc123" / "images").mkdir(parents=True)
    ensure_generated(out, TINY)
    assert siblings(out) == [lock_path(out).name, "data"]


def test_a_foreign_folder_is_never_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my own files")
    with pytest.raises(FileExistsError, match="not made by the shapes generator"):
        ensure_generated(out, TINY)
    assert (out / "notes.txt").read_text() == "my own files"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ensure_generated(empty, TINY) is True


def _generate_in_child(out: str, queue) -> None:
    queue.put(ensure_generated(out, TINY))


def test_parallel_processes_generate_once(tmp_path: Path) -> None:
    out = str(tmp_path / "data")
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_generate_in_child, args=(out, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    results = sorted(queue.get(timeout=5) for _ in procs)
    assert results == [False, False, True]
    assert manifest_mismatch(out, TINY) == []


def test_bad_parameters_are_reported_by_name() -> None:
    with pytest.raises(ConfigError) as err:
        ShapesConfig.from_mapping({"seed": 0, "num_shapes": 2, "colour": "red"}, where="build_info.generator")
    assert "build_info.generator.num_shapes" in str(err.value) and "build_info.generator.colour" in str(err.value)
    assert "image_size" in str(err.value)  # lists the valid keys
    with pytest.raises(ConfigError, match="kinds"):
        ShapesConfig(kinds=("circle", "blob", "square"))
    with pytest.raises(ConfigError, match="max_shapes"):
        ShapesConfig(max_shapes=4)
    with pytest.raises(ConfigError, match="num_sizes"):
        ShapesConfig(num_sizes=5)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    args = ["--out", str(out), "--seed", "4", "--num-train", "4", "--num-val", "2", "--num-test", "2",
            "--image-size", "48", "--kinds", "circle,square,star"]
    assert shapes.main(args) == 0
    assert "generated" in capsys.readouterr().out
    params = read_manifest(out)["params"]
    assert params["seed"] == 4 and params["image_size"] == 48 and params["kinds"] == ["circle", "square", "star"]
    assert shapes.main(args) == 0
    assert "reused" in capsys.readouterr().out
