"""Data set downloads (``python -m lavis.datasets.download``) against a file server on 127.0.0.1.

The real specs (real URLs) are used; ``LAVIS_MIRROR`` points at the local server, which serves small
files the tests make at ``/<host>/<path>`` of each real URL. Published MD5s cannot match fake files,
so tests that need a complete download use the spec with its published checksums removed, and one
test shows that a file that does not match a published MD5 is refused.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shlex
import tarfile
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lavis.datasets.download import __main__ as cli
from lavis.datasets.download import catalog, download_dataset, get_spec, markdown_tables
from lavis.datasets.download.spec import Archive, DatasetSpec, Manual, RemoteFile
from tests.helpers.http_server import FileServer

pytest_plugins = ["tests.helpers.fixtures"]  # the http_server and lavis_cache fixtures

REPO = Path(__file__).resolve().parents[3]
REQUIRED = ("coco", "flickr30k", "vqav2", "okvqa", "aokvqa", "gqa", "nocaps", "nlvr2", "snli_ve", "msrvtt", "msvd",
            "didemo", "cc3m", "cc12m", "laion400m")


# ------------------------------------------------------------------------------------------------ helpers
def mirror_path(url: str) -> str:
    """Where ``LAVIS_MIRROR`` sends a real URL: ``/<host>/<path>`` on the mirror."""
    parts = urlsplit(url)
    return f"/{parts.netloc}{parts.path}"


def serve(server: FileServer, url: str, data: bytes, **options) -> str:
    server.add(mirror_path(url), data, **options)
    return mirror_path(url)


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar(members: dict[str, bytes], links: dict[str, str] | None = None, mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


def strip_published(spec: DatasetSpec) -> DatasetSpec:
    """``spec`` without its published checksums (fake test files cannot match them)."""
    def step(s):
        if isinstance(s, (RemoteFile, Archive)):
            return dataclasses.replace(s, md5=None, sha256=None, size=None)
        if isinstance(s, Manual):
            return dataclasses.replace(s, archives=tuple(step(a) for a in s.archives))
        return s
    parts = tuple(dataclasses.replace(p, steps=tuple(step(s) for s in p.steps)) for p in spec.parts)
    return dataclasses.replace(spec, parts=parts)


@pytest.fixture
def mirror(http_server: FileServer, lavis_cache: Path, monkeypatch: pytest.MonkeyPatch) -> FileServer:
    monkeypatch.setenv("LAVIS_MIRROR", http_server.base_url)
    return http_server


@pytest.fixture
def unpinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every spec without published checksums, for tests that serve fake files."""
    monkeypatch.setattr(catalog, "ALL_DATASETS", tuple(strip_published(s) for s in catalog.ALL_DATASETS))


def image_bytes(name: str) -> bytes:
    return f"fake jpeg of {name}".encode() * 50


def serve_coco(server: FileServer) -> dict[str, bytes]:
    """Serve the COCO annotations and two small image zips at their real (mirrored) URLs; returns
    ``{path under the root: expected bytes}``."""
    spec = get_spec("coco")
    expected: dict[str, bytes] = {}
    for part in spec.parts:
        for step in part.steps:
            if isinstance(step, RemoteFile):
                data = json.dumps([{"image": "val2014/COCO_val2014_000000000042.jpg", "caption": [step.path],
                                    "image_id": "42"}]).encode()
                serve(server, step.url, data)
                expected[step.path] = data
            elif isinstance(step, Archive):
                split = step.filename.removesuffix(".zip")
                members = {f"{split}/COCO_{split}_{i:012d}.jpg": image_bytes(f"{split}/{i}") for i in (1, 2)}
                serve(server, step.url, make_zip(members))
                expected.update({f"coco/images/{k}": v for k, v in members.items()})
    return expected


def suggested_commands(text: str) -> list[list[str]]:
    """The ``python -m lavis.datasets.download ...`` commands a message tells the user to run, as the
    argv lists ``cli.main`` takes (what the tests run to check that the advice works)."""
    found = re.findall(r"(python -m lavis\.datasets\.download [^\n]*?)(?: where the network|$)", text, flags=re.M)
    return [shlex.split(c)[3:] for c in found]


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def names(folder: Path) -> list[str]:
    """File names in ``folder``, without the ``.lock`` files that download locks leave."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".locks" and not p.name.endswith(".lock"))


# ------------------------------------------------------------------------------------------------ the catalog
def test_catalog_has_every_required_data_set_with_real_urls_and_no_invented_checksums() -> None:
    names = catalog.dataset_names()
    assert set(REQUIRED) <= set(names)
    targets: dict[str, str] = {}
    for spec in catalog.ALL_DATASETS:
        assert spec.parts and spec.layout and spec.sources, spec.name
        for part in spec.parts:
            for step in part.steps:
                for s in (step, *getattr(step, "archives", ())):
                    url = getattr(s, "url", None)
                    if url is not None:
                        assert url.startswith(("http://", "https://")) and "/export/" not in url, url
                    if isinstance(s, (RemoteFile, Archive)):
                        if s.md5 or s.sha256 or s.size:
                            assert s.checksum_source, f"{s} pins a value without saying where it is published"
                        assert s.md5 is None or (len(s.md5) == 32 and int(s.md5, 16) >= 0)
                    if isinstance(s, Archive):
                        assert s.expect, s
                        # one archive file name per data set folder: downloads and markers cannot collide
                        assert targets.setdefault(s.download_path, s.into) == s.into, s.download_path
    assert get_spec("VQA").name == "vqav2" and get_spec("nlvr").name == "nlvr2"
    with pytest.raises(KeyError, match="did you mean 'coco'"):
        get_spec("cocoo")


def test_docs_table_is_generated_from_the_catalog() -> None:
    text = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
    assert markdown_tables() in text, "docs/datasets.md is stale: paste `python -m lavis.datasets.download --markdown`"


# ------------------------------------------------------------------------------------------------ downloads
def test_coco_lands_where_documented_and_a_second_run_downloads_nothing(mirror: FileServer, lavis_cache: Path,
                                                                        unpinned: None) -> None:
    expected = serve_coco(mirror)
    report = download_dataset("coco", progress=False)
    assert report.exit_code == 0, report.summary()
    for rel, data in expected.items():
        assert (lavis_cache / rel).read_bytes() == data, rel
    # exactly the documented layout: Karpathy files, COCO gt files, images/{train2014,val2014}
    assert names(lavis_cache / "coco" / "annotations") == [
        "coco_karpathy_test.json", "coco_karpathy_train.json", "coco_karpathy_val.json"]
    assert names(lavis_cache / "coco_gt") == [
        "coco_karpathy_test_gt.json", "coco_karpathy_val_gt.json"]
    assert names(lavis_cache / "coco" / "images") == ["train2014", "val2014"]
    assert not (lavis_cache / "coco" / "downloads" / "train2014.zip").exists()  # archives removed by default
    requests = mirror.count()
    assert requests == len(expected) - 4 + 2  # one GET per annotation file and per archive

    again = download_dataset("coco", progress=False)
    assert again.exit_code == 0 and {o.status for o in again.outcomes} == {"present"}
    assert mirror.count() == requests  # nothing was fetched again

    # vqav2 shares the COCO image parts: they are already done; only its own files are fetched
    for step in get_spec("vqav2").parts[0].steps:
        serve(mirror, step.url, b"{}")
    serve(mirror, "http://images.cocodataset.org/zips/test2015.zip", make_zip({"test2015/a.jpg": b"x"}))
    vqa = download_dataset("vqav2", progress=False)
    assert vqa.exit_code == 0, vqa.summary()
    assert mirror.count(mirror_path("http://images.cocodataset.org/zips/train2014.zip")) == 1


def test_an_interrupted_archive_download_resumes_with_a_range_request(mirror: FileServer, lavis_cache: Path,
                                                                      unpinned: None) -> None:
    members = {f"YouTubeClips/clip{i}.avi": bytes(range(256)) * 40 for i in range(3)}
    data = make_tar(members, mode="w")
    url = get_spec("msvd").parts[1].steps[0].url
    path = serve(mirror, url, data, cut_after=5000)  # the first answer stops after 5000 bytes

    first = download_dataset("msvd", only="videos", progress=False, retries=0)
    assert first.exit_code == 1 and "next run resumes" in first.failed[0].message
    assert (lavis_cache / "msvd" / "downloads" / "YouTubeClips.tar.part").stat().st_size == 5000

    second = download_dataset("msvd", only="videos", progress=False)
    assert second.exit_code == 0, second.summary()
    assert mirror.ranges(path) == [None, "bytes=5000-"]
    assert mirror.bytes_sent(path) == len(data)  # no byte was sent twice
    for name, content in members.items():
        assert (lavis_cache / "msvd" / "videos" / Path(name).name).read_bytes() == content
    marker = json.loads((lavis_cache / "msvd" / ".lavis_state" / "YouTubeClips.tar.json").read_text())
    assert marker["files"] == 3 and len(marker["sha256"]) == 64


def test_keep_archives_keeps_the_verified_archive_and_a_changed_one_is_fetched_again(
        mirror: FileServer, lavis_cache: Path, unpinned: None) -> None:
    url = get_spec("didemo").parts[1].steps[0].url
    serve(mirror, url, make_tar({"videos/a.mp4": b"a" * 100}))
    assert download_dataset("didemo", only="videos", keep_archives=True, progress=False).exit_code == 0
    archive = lavis_cache / "didemo" / "downloads" / "didemo_videos.tar.gz"
    assert archive.is_file() and (lavis_cache / "didemo" / "videos" / "a.mp4").read_bytes() == b"a" * 100


def test_parallel_runs_download_and_extract_an_archive_once(mirror: FileServer, lavis_cache: Path,
                                                            unpinned: None) -> None:
    url = get_spec("didemo").parts[1].steps[0].url
    path = serve(mirror, url, make_tar({"videos/a.mp4": b"a" * 5000, "videos/b.mp4": b"b" * 5000}), delay=0.3)
    reports: list = []
    threads = [threading.Thread(target=lambda: reports.append(
        download_dataset("didemo", only="videos", progress=False, log=lambda _: None))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.exit_code for r in reports] == [0, 0]
    assert sorted(o.status for r in reports for o in r.outcomes) == ["fetched", "present"]
    assert mirror.full_gets(path) == 1
    assert (lavis_cache / "didemo" / "videos" / "b.mp4").read_bytes() == b"b" * 5000


def test_snli_ve_keeps_only_its_three_files_from_the_albef_archive(mirror: FileServer, lavis_cache: Path,
                                                                   unpinned: None) -> None:
    files = {f"data/ve_{s}.json": json.dumps([{"sentence": s}]).encode() for s in ("train", "dev", "test")}
    archive = get_spec("snli_ve").parts[0].steps[0]
    serve(mirror, archive.url, make_tar({**files, "data/coco_train.json": b"[]", "data/nlvr_train.json": b"[]"}))
    assert download_dataset("snli_ve", only="annotations", progress=False).exit_code == 0
    assert names(lavis_cache / "snli" / "annotations") == ["ve_dev.json", "ve_test.json", "ve_train.json"]
    for name, data in files.items():
        assert (lavis_cache / "snli" / "annotations" / Path(name).name).read_bytes() == data


def test_a_file_changed_after_its_download_is_fetched_again(mirror: FileServer, lavis_cache: Path) -> None:
    steps = get_spec("gqa").parts[0].steps
    for step in steps:
        serve(mirror, step.url, json.dumps({"q1": {"question": step.path}}).encode())
    assert download_dataset("gqa", only="annotations", progress=False).exit_code == 0
    changed = lavis_cache / steps[0].path
    good = changed.read_bytes()
    changed.write_bytes(good[:-3] + b"xyz")  # same size, other bytes
    mirror.reset_log()
    report = download_dataset("gqa", only="annotations", progress=False)
    assert report.exit_code == 0 and changed.read_bytes() == good
    assert [r.path for r in mirror.requests] == [mirror_path(steps[0].url)]


def test_a_file_that_does_not_match_its_published_md5_is_refused(mirror: FileServer, lavis_cache: Path) -> None:
    step = get_spec("coco").parts[0].steps[0]  # coco_karpathy_train.json, MD5 published in LAVIS's config
    assert step.md5 == "aa31ac474cf6250ebb81d18348a07ed8"
    serve(mirror, step.url, b"[]")
    report = download_dataset("coco", only="annotations", progress=False)
    assert report.exit_code == 1
    message = report.failed[0].message
    assert "aa31ac474cf6250ebb81d18348a07ed8" in message and "coco_karpathy_train.json" in message
    assert not (lavis_cache / step.path).exists()  # never left where a builder would read it


@pytest.mark.parametrize("kind", ["dotdot_zip", "absolute_tar", "symlink_tar"])
def test_an_archive_that_would_write_outside_its_target_is_refused(mirror: FileServer, lavis_cache: Path,
                                                                   unpinned: None, tmp_path: Path, kind: str) -> None:
    if kind == "dotdot_zip":
        spec_name, data = "gqa", make_zip({"images/ok.jpg": b"ok", "../../../evil.txt": b"evil"})
    elif kind == "absolute_tar":
        spec_name, data = "msvd", make_tar({"YouTubeClips/ok.avi": b"ok", str(tmp_path / "evil.txt"): b"evil"})
    else:
        spec_name, data = "msvd", make_tar({"YouTubeClips/ok.avi": b"ok"}, links={"YouTubeClips/evil": "../../../.."})
    spec = get_spec(spec_name)
    archive = next(s for p in spec.parts for s in p.steps if isinstance(s, Archive))
    serve(mirror, archive.url, data)
    before = tree(tmp_path)

    report = download_dataset(spec_name, only="images" if spec_name == "gqa" else "videos", progress=False)
    assert report.exit_code == 1 and "refusing to extract" in report.failed[0].message
    new = tree(tmp_path) - before
    allowed = (f"cache/{spec.name}/downloads", f"cache/{spec.name}/.lavis_state", "cache/manifest.json", "cache")
    assert all(p.startswith(allowed) for p in new), sorted(new)
    assert not any("evil" in p for p in tree(tmp_path)) and not (lavis_cache / archive.into / "ok.jpg").exists()
    assert not (lavis_cache / archive.marker_path).exists()


def test_nocaps_images_are_fetched_one_by_one_and_failures_are_retried(mirror: FileServer, lavis_cache: Path,
                                                                       unpinned: None) -> None:
    spec = get_spec("nocaps")
    images = {}
    for part in spec.parts[1:]:
        index_step, listed = part.steps
        urls = [f"https://s3.amazonaws.com/nocaps/{part.name}/{i:04d}.jpg" for i in range(3)]
        serve(mirror, index_step.url, json.dumps({"images": [{"coco_url": u, "id": i} for i, u in enumerate(urls)]}).encode())
        for u in urls:
            images[f"{listed.into}/{Path(u).name}"] = serve(mirror, u, image_bytes(u))
    broken = next(iter(images.values()))
    mirror.configure(broken, status=404)

    first = download_dataset("nocaps", only="images", progress=False, retries=0)
    assert first.exit_code == 1 and "1 of 3 files" in first.failed[0].message
    mirror.configure(broken, status=None)
    mirror.reset_log()
    second = download_dataset("nocaps", only="images", progress=False)
    assert second.exit_code == 0, second.summary()
    assert [r.path for r in mirror.requests] == [broken]  # only the missing file was fetched
    for rel in images:
        assert (lavis_cache / rel).is_file(), rel


# ------------------------------------------------------------------------------------------------ manual steps, CLI
def test_a_licence_form_data_set_prints_what_to_do_and_exits_nonzero(mirror: FileServer, lavis_cache: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["flickr30k", "--only", "images", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3
    assert "https://forms.illinois.edu/sec/229675" in err
    assert str(lavis_cache / "flickr30k" / "downloads" / "flickr30k-images.tar.gz") in err
    assert str(lavis_cache / "flickr30k" / "images" / "flickr30k-images") in err
    assert "python -m lavis.datasets.download flickr30k --only images" in err
    assert mirror.count() == 0

    # the user drops the archive they got through the form where the message said: the next run extracts it
    drop = lavis_cache / "flickr30k" / "downloads" / "flickr30k-images.tar.gz"
    drop.parent.mkdir(parents=True)
    drop.write_bytes(make_tar({"flickr30k-images/1000092795.jpg": b"jpg"}))
    assert cli.main(["flickr30k", "--only", "images", "--no-progress"]) == 0
    assert (lavis_cache / "flickr30k" / "images" / "flickr30k-images" / "1000092795.jpg").read_bytes() == b"jpg"
    assert cli.main(["snli_ve", "--only", "images", "--no-progress"]) == 0  # SNLI-VE shares the Flickr30k images


def test_list_shows_every_data_set_its_parts_sizes_and_presence(mirror: FileServer, lavis_cache: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in catalog.dataset_names():
        assert f"\n{name}" in out, name
    assert "images/train2014" in out and "~13GB (published)" in out and "missing (manual step)" in out

    (lavis_cache / "gqa" / "annotations").mkdir(parents=True)
    for step in get_spec("gqa").parts[0].steps:
        (lavis_cache / step.path).write_text("{}")
    assert cli.main(["--list", "gqa"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["annotations", "annotations", "present"] for line in lines), lines
    assert cli.main(["cocoo"]) == 2
    assert "did you mean 'coco'" in capsys.readouterr().err
    assert cli.main(["coco", "--only", "videos"]) == 2
    assert "coco has no videos parts" in capsys.readouterr().err


def test_web_scale_sets_print_the_img2dataset_command_then_verify_the_shards(mirror: FileServer, lavis_cache: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    import webdataset as wds

    serve(mirror, "https://storage.googleapis.com/conceptual_12m/cc12m.tsv", b"http://x/1.jpg\ta cat\n")
    assert cli.main(["cc12m", "--no-progress"]) == 3
    err = capsys.readouterr().err
    shards = lavis_cache / "cc12m" / "shards"
    assert f"--url_list {lavis_cache}/cc12m/cc12m_with_header.tsv" in err
    assert f"--output_format webdataset --output_folder {shards}" in err and "pip install img2dataset" in err
    assert (lavis_cache / "cc12m" / "cc12m.tsv").read_bytes() == b"http://x/1.jpg\ta cat\n"

    shards.mkdir()
    for n in range(2):
        with wds.TarWriter(str(shards / f"{n:05d}.tar")) as sink:
            for i in range(3):
                sink.write({"__key__": f"{n:05d}{i:04d}", "jpg": b"\xff\xd8fake", "txt": f"caption {i}"})
        (shards / f"{n:05d}_stats.json").write_text(json.dumps({"successes": 3}))
    assert cli.main(["cc12m", "--no-progress"]) == 0
    assert "{00000..00001}.tar" in capsys.readouterr().out
    marker = json.loads((lavis_cache / "cc12m" / ".lavis_state" / "shards.verified.json").read_text())
    assert marker["total_samples"] == 6

    (shards / "00001.tar").write_bytes((shards / "00001.tar").read_bytes()[:700])  # truncated shard
    assert cli.main(["cc12m", "--no-progress"]) == 1
    assert "00001.tar" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ offline
def test_root_option_lays_out_and_records_under_that_folder(mirror: FileServer, lavis_cache: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAVIS_CACHE_HOME", str(lavis_cache))  # restored after the test (main sets it from --root)
    for step in get_spec("didemo").parts[0].steps:
        serve(mirror, step.url, b"[]")
    root = tmp_path / "data"
    assert cli.main(["didemo", "--only", "annotations", "--root", str(root), "--no-progress"]) == 0
    assert (root / "didemo" / "annotations" / "retrieval_train.json").read_bytes() == b"[]"
    assert "didemo/annotations/retrieval_train.json" in json.loads((root / "manifest.json").read_text())["files"]
    assert not (lavis_cache / "didemo").exists()


def test_offline_with_nothing_cached_names_the_file_and_the_command(mirror: FileServer, lavis_cache: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    assert cli.main(["coco", "--only", "annotations", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert str(lavis_cache / "coco" / "annotations" / "coco_karpathy_train.json") in err
    assert "python -m lavis.datasets.download coco --only annotations" in err
    assert mirror.count() == 0


def test_offline_with_a_filled_cache_works_without_the_network(mirror: FileServer, lavis_cache: Path, unpinned: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    serve_coco(mirror)
    assert download_dataset("coco", progress=False).exit_code == 0
    requests = mirror.count()
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    report = download_dataset("coco", progress=False)
    assert report.exit_code == 0 and mirror.count() == requests


def test_image_folders_copied_by_hand_are_used_offline_without_downloading(mirror: FileServer, lavis_cache: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    for split in ("train2014", "val2014"):
        (lavis_cache / "coco" / "images" / split).mkdir(parents=True)
        (lavis_cache / "coco" / "images" / split / f"COCO_{split}_000000000001.jpg").write_bytes(b"jpg")
    report = download_dataset("coco", only="images", progress=False)
    assert report.exit_code == 0 and {o.status for o in report.outcomes} == {"present"}
    assert mirror.count() == 0
    assert json.loads((lavis_cache / "coco" / ".lavis_state" / "train2014.zip.json").read_text())["placed_by_hand"]


def test_a_file_placed_by_hand_is_checked_against_the_published_md5(mirror: FileServer, lavis_cache: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    step = get_spec("coco").parts[0].steps[1]  # coco_karpathy_val.json, MD5 published
    (lavis_cache / step.path).parent.mkdir(parents=True)
    (lavis_cache / step.path).write_bytes(b"not the real file")
    report = download_dataset("coco", only="annotations", progress=False)
    assert report.exit_code == 1
    assert any(step.md5 in o.message and "placed by hand" in o.message for o in report.failed)


def test_the_commands_offline_messages_name_fetch_the_files(mirror: FileServer, lavis_cache: Path, unpinned: None,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    steps = get_spec("gqa").parts[0].steps
    for step in steps:
        serve(mirror, step.url, json.dumps({"q1": {"question": step.path}}).encode())
    root = tmp_path / "data root"  # a path with a space: the command must quote it
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    assert cli.main(["gqa", "--only", "annotations", "--root", str(root), "--no-progress"]) == 1
    (command,) = set(map(tuple, suggested_commands(capsys.readouterr().err)))
    assert command == ("gqa", "--root", str(root), "--only", "annotations")
    monkeypatch.delenv("LAVIS_OFFLINE")
    assert cli.main(list(command) + ["--no-progress"]) == 0
    assert all((root / step.path).is_file() for step in steps)

    # a file changed after its download: offline the message names the command, which fetches it again
    changed = root / steps[0].path
    good = changed.read_bytes()
    changed.write_bytes(good[:-3] + b"xyz")
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    assert cli.main(list(command) + ["--no-progress"]) == 1
    err = capsys.readouterr().err
    assert str(changed) in err and "sha256" in err
    assert {tuple(c) for c in suggested_commands(err)} == {command}
    assert changed.read_bytes() != good
    monkeypatch.delenv("LAVIS_OFFLINE")
    assert cli.main(list(command) + ["--no-progress"]) == 0 and changed.read_bytes() == good
