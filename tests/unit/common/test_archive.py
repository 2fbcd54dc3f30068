"""safe_extract: good archives extract exactly; unsafe ones are refused before anything is written."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from lavis.common.archive import ArchiveError, UnsafeArchiveError, safe_extract

GOOD = {"a.txt": b"alpha", "sub/b.bin": bytes(range(200)), "sub/deeper/c.json": b'{"k": 1}'}


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (links not followed) with its bytes (None for folders/links)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            out[str(p.relative_to(folder))] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


@pytest.fixture
def work(tmp_path):
    """An archive folder and a target parent folder that holds a canary file."""
    (tmp_path / "arch").mkdir()
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "canary.txt").write_bytes(b"untouched")
    return tmp_path / "arch", parent


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tar.gz", "w:gz"), (".tgz", "w:gz"),
                                         (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")])
def test_good_tar_extracts_exactly(work, suffix, mode):
    arch, parent = work
    members = [_file(n, d) for n, d in GOOD.items()]
    d = tarfile.TarInfo("emptydir")
    d.type = tarfile.DIRTYPE
    members.append((d, None))
    path = _tar(arch / f"good{suffix}", members, mode)
    dest = parent / "data"
    files = safe_extract(path, dest)
    assert files == [dest / n for n in GOOD]
    assert {k: v for k, v in _snapshot(dest).items() if v is not None} == GOOD
    assert (dest / "emptydir").is_dir()
    assert sorted(p.name for p in parent.iterdir()) == ["canary.txt", "data"]  # no temp folder left


def test_good_zip_extracts_exactly(work):
    arch, parent = work
    path = _zip(arch / "good.zip", list(GOOD.items()) + [("dir/", b"")])
    dest = parent / "data"
    files = safe_extract(path, dest)
    assert files == [dest / n for n in GOOD]
    assert {k: v for k, v in _snapshot(dest).items() if v is not None} == GOOD
    assert (dest / "dir").is_dir()
    assert sorted(p.name for p in parent.iterdir()) == ["canary.txt", "data"]


def test_extract_merges_into_existing_target(work):
    arch, parent = work
    dest = parent / "data"
    (dest / "sub").mkdir(parents=True)
    (dest / "keep.txt").write_bytes(b"mine")
    (dest / "a.txt").write_bytes(b"old")
    safe_extract(_tar(arch / "g.tar.gz", [_file(n, d) for n, d in GOOD.items()], "w:gz"), dest)
    snap = _snapshot(dest)
    assert snap["keep.txt"] == b"mine" and snap["a.txt"] == b"alpha" and snap["sub/b.bin"] == GOOD["sub/b.bin"]


def test_hardlink_to_earlier_member_is_allowed(work):
    arch, parent = work
    path = _tar(arch / "hl.tar", [_file("x/orig.txt", b"same"), _link("x/copy.txt", "x/orig.txt", tarfile.LNKTYPE)])
    files = safe_extract(path, parent / "d")
    assert files == [parent / "d/x/orig.txt", parent / "d/x/copy.txt"]
    assert (parent / "d/x/copy.txt").read_bytes() == b"same"


def test_leading_dot_slash_members_are_fine(work):
    arch, parent = work
    path = _tar(arch / "dot.tar", [_file("./a.txt", b"alpha"), _file("./sub/./b.txt", b"b")])
    assert safe_extract(path, parent / "d") == [parent / "d/a.txt", parent / "d/sub/b.txt"]


def _unsafe_tars(parent: Path) -> dict[str, list]:
    outside = str(parent / "evil_abs.txt")
    return {
        "dotdot": [_file("ok.txt", b"ok"), _file("../evil.txt", b"x")],
        "dotdot_inner": [_file("ok.txt", b"ok"), _file("sub/../../evil.txt", b"x")],
        "absolute": [_file("ok.txt", b"ok"), _file(outside, b"x")],
        "symlink_out": [_file("ok.txt", b"ok"), _link("link", "../canary.txt", tarfile.SYMTYPE)],
        "symlink_abs": [_file("ok.txt", b"ok"), _link("link", "/etc/passwd", tarfile.SYMTYPE)],
        "symlink_then_write_through": [_link("sub", "..", tarfile.SYMTYPE), _file("sub/evil.txt", b"x")],
        "hardlink_out": [_file("ok.txt", b"ok"), _link("hl", "../canary.txt", tarfile.LNKTYPE)],
        "hardlink_abs": [_file("ok.txt", b"ok"), _link("hl", str(parent / "canary.txt"), tarfile.LNKTYPE)],
        "hardlink_forward": [_link("hl", "later.txt", tarfile.LNKTYPE), _file("later.txt", b"x")],
        "fifo": [_file("ok.txt", b"ok"), (tarfile.TarInfo("pipe"), None)],
        "chardev": [_file("ok.txt", b"ok"), (tarfile.TarInfo("dev"), None)],
        "backslash": [_file("ok.txt", b"ok"), _file("..\\evil.txt", b"x")],
    }


@pytest.mark.parametrize("case", list(_unsafe_tars(Path("/p")).keys()))
@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_unsafe_tar_is_refused_and_writes_nothing(work, case, mode):
    arch, parent = work
    members = _unsafe_tars(parent)[case]
    if case == "fifo":
        members[1][0].type = tarfile.FIFOTYPE
    if case == "chardev":
        members[1][0].type = tarfile.CHRTYPE
    path = _tar(arch / f"{case}.tar{'.gz' if mode == 'w:gz' else ''}", members, mode)
    before_parent, before_tmp = _snapshot(parent), _snapshot(parent.parent)
    dest = parent / "data"
    with pytest.raises(UnsafeArchiveError) as e:
        safe_extract(path, dest)
    bad = members[-1][0].name if case not in ("symlink_then_write_through", "hardlink_forward") else members[0][0].name
    assert repr(bad) in str(e.value) and e.value.member == bad
    assert _snapshot(parent) == before_parent  # nothing inside dest (not even dest), nothing beside it
    assert _snapshot(parent.parent) == before_tmp
    assert not dest.exists()


def test_unsafe_tar_into_existing_target_leaves_it_unchanged(work):
    arch, parent = work
    dest = parent / "data"
    dest.mkdir()
    (dest / "keep.txt").write_bytes(b"mine")
    path = _tar(arch / "bad.tar", [_file("keep.txt", b"overwritten?"), _file("../evil.txt", b"x")])
    before = _snapshot(parent)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(path, dest)
    assert _snapshot(parent) == before


def _zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


@pytest.mark.parametrize("case", ["dotdot", "dotdot_inner", "absolute", "symlink_out", "symlink_in", "fifo"])
def test_unsafe_zip_is_refused_and_writes_nothing(work, case):
    arch, parent = work
    bad = {
        "dotdot": ("../evil.txt", b"x"),
        "dotdot_inner": ("a/../../evil.txt", b"x"),
        "absolute": (str(parent / "evil_abs.txt"), b"x"),
        "symlink_out": _zip_symlink("link", "../canary.txt"),
        "symlink_in": _zip_symlink("link", "ok.txt"),
        "fifo": None,
    }[case]
    if case == "fifo":
        info = zipfile.ZipInfo("pipe")
        info.create_system = 3
        info.external_attr = (stat.S_IFIFO | 0o644) << 16
        bad = (info, b"")
    path = _zip(arch / f"{case}.zip", [("ok.txt", b"ok"), bad])
    with zipfile.ZipFile(path) as zf:  # the archive really holds the hostile name
        name = zf.infolist()[1].filename
    assert name == (bad[0] if isinstance(bad[0], str) else bad[0].filename)
    before = _snapshot(parent.parent)
    with pytest.raises(UnsafeArchiveError) as e:
        safe_extract(path, parent / "data")
    assert e.value.member == name and repr(name) in str(e.value)
    assert _snapshot(parent.parent) == before


def test_corrupt_archive_is_an_archive_error_and_leaves_nothing(work):
    arch, parent = work
    good = _tar(arch / "g.tar.gz", [_file(n, d) for n, d in GOOD.items()], "w:gz")
    cut = arch / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    before = _snapshot(parent)
    with pytest.raises(ArchiveError, match="download it again"):
        safe_extract(cut, parent / "data")
    assert _snapshot(parent) == before


def test_unknown_format_and_file_target(work):
    arch, parent = work
    junk = arch / "junk.bin"
    junk.write_bytes(b"not an archive at all")
    with pytest.raises(ArchiveError, match="not a tar"):
        safe_extract(junk, parent / "data")
    with pytest.raises(ArchiveError, match="not a folder"):
        safe_extract(_zip(arch / "g.zip", list(GOOD.items())), parent / "canary.txt")


def test_file_folder_clash_with_existing_target_changes_nothing(work):
    arch, parent = work
    dest = parent / "data"
    dest.mkdir()
    (dest / "sub").write_bytes(b"a file where the archive has a folder")
    before = _snapshot(parent)
    with pytest.raises(ArchiveError, match="is a file but the archive has a folder"):
        safe_extract(_zip(arch / "g.zip", list(GOOD.items())), dest)
    assert _snapshot(parent) == before
