"""Atomic writes: the file appears whole or not at all, with the mode a plain open() gives."""

from __future__ import annotations

import os
import stat

import pytest

from lavis.common.io import atomic_open, atomic_write_text


def test_atomic_write_gives_the_mode_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text("hello", tmp_path / "a.txt")
        with open(tmp_path / "b.txt", "w") as f:
            f.write("hello")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_atomic_open_leaves_the_old_file_and_no_temporary_on_error(tmp_path):
    target = tmp_path / "c.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write(b"new, half written")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.bin"]
