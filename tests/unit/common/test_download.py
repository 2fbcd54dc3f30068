"""The downloader against a real HTTP server on 127.0.0.1: resume, retries, integrity, locking,
offline mode, the manifest and the mirror."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from lavis.common import download as dl
from lavis.common import manifest
from lavis.common.download import (
    DownloadError,
    IntegrityError,
    OfflineError,
    cached_file,
    download_url,
    is_offline,
    lookup,
    manifest_path,
    mirror_url,
    sha256_file,
    verify_file,
)

pytest_plugins = ["tests.helpers.fixtures"]  # the http_server and lavis_cache fixtures

DATA = bytes(range(256)) * 1200 + b"tail"  # 307204 bytes, a few chunks
SHA = hashlib.sha256(DATA).hexdigest()
FAST = {"backoff": 0.01, "progress": False}


def test_plain_download_is_exact_and_leaves_no_part_file(http_server, tmp_path):
    url = http_server.add("/w/model.pth", DATA)
    dest = download_url(url, tmp_path / "out" / "model.pth", sha256=SHA, size=len(DATA), **FAST)
    assert dest.read_bytes() == DATA
    assert not dest.with_name("model.pth.part").exists()
    assert http_server.full_gets("/w/model.pth") == 1
    # an existing, correct file is returned without any request
    assert download_url(url, dest, sha256=SHA, **FAST) == dest
    assert http_server.count() == 1


def test_cut_download_resumes_with_range_from_where_it_stopped(http_server, tmp_path):
    k = 100_000
    url = http_server.add("/w/cut.bin", DATA, cut_after=k)
    dest = download_url(url, tmp_path / "cut.bin", sha256=SHA, **FAST)
    assert sha256_file(dest) == SHA
    assert http_server.ranges("/w/cut.bin") == [None, f"bytes={k}-"]
    second = http_server.requests[1]
    assert second.status == 206 and second.bytes_sent == len(DATA) - k
    assert http_server.bytes_sent("/w/cut.bin") == len(DATA)  # nothing fetched twice


def test_connection_reset_is_retried_and_resumed(http_server, tmp_path):
    url = http_server.add("/w/reset.bin", DATA, cut_after=5000, cut_mode="reset", cut_times=2)
    dest = download_url(url, tmp_path / "reset.bin", sha256=SHA, **FAST)
    assert dest.read_bytes() == DATA
    ranges = http_server.ranges("/w/reset.bin")
    assert len(ranges) == 3 and ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:])


def test_file_changed_on_the_server_between_tries_is_fetched_whole(http_server, tmp_path):
    new = DATA[::-1]

    def replace_file(route, n):
        if n == 2:  # the publisher replaced the file after the first try was cut
            route.data = new

    url = http_server.add("/w/changed.bin", DATA, cut_after=50_000, on_request=replace_file)
    dest = download_url(url, tmp_path / "changed.bin", **FAST)
    assert dest.read_bytes() == new  # not the first 50 kB of the old file glued to the rest of the new one
    second = http_server.requests[1]
    first_etag = '"' + hashlib.sha256(DATA).hexdigest()[:20] + '"'  # what the server sent with the first answer
    assert second.range == "bytes=50000-" and second.headers["If-Range"] == first_etag and second.status == 200


def test_part_file_from_an_earlier_run_is_resumed(http_server, tmp_path):
    url = http_server.add("/w/old.bin", DATA)
    dest = tmp_path / "old.bin"
    dest.with_name("old.bin.part").write_bytes(DATA[:1234])
    download_url(url, dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == DATA
    assert http_server.ranges("/w/old.bin") == ["bytes=1234-"]


def test_server_ignoring_range_restarts_from_zero(http_server, tmp_path):
    url = http_server.add("/w/norange.bin", DATA, ignore_range=True)
    dest = tmp_path / "norange.bin"
    dest.with_name("norange.bin.part").write_bytes(b"garbage that must not stay in front")
    download_url(url, dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == DATA
    assert http_server.requests[0].status == 200


def test_complete_part_file_416_is_verified_and_used(http_server, tmp_path):
    url = http_server.add("/w/done.bin", DATA)
    dest = tmp_path / "done.bin"
    dest.with_name("done.bin.part").write_bytes(DATA)
    download_url(url, dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == DATA
    assert [r.status for r in http_server.requests] == [416]
    assert http_server.bytes_sent() == 0


def test_wrong_complete_part_file_is_fetched_again(http_server, tmp_path):
    url = http_server.add("/w/bad416.bin", DATA)
    dest = tmp_path / "bad416.bin"
    bad = bytearray(DATA)
    bad[7] ^= 1
    dest.with_name("bad416.bin.part").write_bytes(bytes(bad))
    download_url(url, dest, sha256=SHA, **FAST)
    assert dest.read_bytes() == DATA
    assert [r.status for r in http_server.requests] == [416, 200]


def test_truncated_body_is_detected_and_fetched_again_never_returned(http_server, tmp_path):
    # every answer announces the full Content-Length but the first two stop early
    url = http_server.add("/w/short.bin", DATA, cut_after=len(DATA) - 10, cut_times=2, ignore_range=True)
    dest = download_url(url, tmp_path / "short.bin", **FAST)  # no pinned values: Content-Length is the guard
    assert dest.read_bytes() == DATA
    assert http_server.count("/w/short.bin") == 3


def test_truncated_body_after_all_retries_raises_and_keeps_part(http_server, tmp_path):
    url = http_server.add("/w/always_short.bin", DATA, cut_after=100, cut_times=None, ignore_range=True)
    dest = tmp_path / "always_short.bin"
    with pytest.raises(DownloadError) as e:
        download_url(url, dest, retries=2, **FAST)
    assert url in str(e.value) and "after 3 tries" in str(e.value)
    assert not dest.exists()
    assert http_server.count("/w/always_short.bin") == 3


def test_corrupted_once_is_fetched_again_from_scratch(http_server, tmp_path):
    url = http_server.add("/w/corrupt1.bin", DATA, corrupt=1)
    dest = download_url(url, tmp_path / "corrupt1.bin", sha256=SHA, **FAST)
    assert dest.read_bytes() == DATA
    assert http_server.full_gets("/w/corrupt1.bin") == 2
    assert http_server.ranges("/w/corrupt1.bin") == [None, None]


def test_corrupted_twice_raises_integrity_error_naming_file_and_hashes(http_server, tmp_path):
    url = http_server.add("/w/corrupt.bin", DATA, corrupt=True)
    dest = tmp_path / "corrupt.bin"
    actual = hashlib.sha256(bytes(bytearray(DATA[: len(DATA) // 2]) + bytes([DATA[len(DATA) // 2] ^ 0xFF])
                                  + DATA[len(DATA) // 2 + 1:])).hexdigest()
    with pytest.raises(IntegrityError) as e:
        download_url(url, dest, sha256=SHA, **FAST)
    msg = str(e.value)
    assert str(dest) in msg and SHA in msg and actual in msg and "pinned" in msg
    assert e.value.expected == SHA and e.value.actual == actual
    assert not dest.exists() and not dest.with_name("corrupt.bin.part").exists()
    assert http_server.full_gets("/w/corrupt.bin") == 2


def test_wrong_size_twice_raises(http_server, tmp_path):
    url = http_server.add("/w/size.bin", DATA)
    with pytest.raises(IntegrityError) as e:
        download_url(url, tmp_path / "size.bin", size=len(DATA) + 1, **FAST)
    assert str(len(DATA) + 1) in str(e.value) and str(len(DATA)) in str(e.value)
    assert not (tmp_path / "size.bin").exists()


def test_500_then_success_is_retried(http_server, tmp_path):
    url = http_server.add("/w/flaky.bin", DATA, fail_first=2)
    dest = download_url(url, tmp_path / "flaky.bin", sha256=SHA, **FAST)
    assert dest.read_bytes() == DATA
    assert [r.status for r in http_server.requests] == [500, 500, 200]


def test_429_is_retried_and_persistent_503_gives_up(http_server, tmp_path):
    url = http_server.add("/w/busy.bin", DATA, fail_first=1, fail_status=429)
    assert download_url(url, tmp_path / "busy.bin", **FAST).read_bytes() == DATA
    url = http_server.add("/w/down.bin", DATA, status=503)
    with pytest.raises(DownloadError) as e:
        download_url(url, tmp_path / "down.bin", retries=3, **FAST)
    assert e.value.status == 503 and url in str(e.value)
    assert http_server.count("/w/down.bin") == 4


def test_404_is_not_retried(http_server, tmp_path):
    url = http_server.add("/w/missing.bin", status=404)
    with pytest.raises(DownloadError) as e:
        download_url(url, tmp_path / "missing.bin", **FAST)
    assert url in str(e.value) and "404" in str(e.value) and "check the URL" in str(e.value)
    assert e.value.status == 404 and e.value.url == url
    assert http_server.count("/w/missing.bin") == 1
    assert not (tmp_path / "missing.bin").exists()


def test_unreachable_host_raises_download_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.bin"
    with pytest.raises(DownloadError) as e:
        download_url(url, tmp_path / "x.bin", retries=1, **FAST)
    assert url in str(e.value) and "after 2 tries" in str(e.value)


def test_redirect_is_followed(http_server, tmp_path):
    http_server.add("/real/file.bin", DATA)
    url = http_server.add("/moved/file.bin", redirect="/real/file.bin")
    assert download_url(url, tmp_path / "file.bin", sha256=SHA, backoff=0.01).read_bytes() == DATA  # progress on


def _download_worker(url: str, dest: str, barrier, results) -> None:
    barrier.wait()
    path = download_url(url, dest, sha256=SHA, progress=False, backoff=0.01)
    results.put((str(path), sha256_file(path)))


def test_two_processes_download_once(http_server, tmp_path):
    # the body pauses half-way, so the second process certainly arrives while the first downloads
    url = http_server.add("/w/shared.bin", DATA, delay=1.0)
    dest = tmp_path / "shared" / "model.bin"
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_download_worker, args=(url, str(dest), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    got = [results.get(timeout=5) for _ in range(2)]
    assert got == [(str(dest), SHA)] * 2
    assert http_server.full_gets("/w/shared.bin") == 1 and http_server.count("/w/shared.bin") == 1
    assert sorted(p.name for p in dest.parent.iterdir() if p.name != ".locks") == ["model.bin"]


# ---------------------------------------------------------------------------------------------
# settings: offline, mirror
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("var", ["LAVIS_OFFLINE", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("YES", True), ("on", True),
                                            ("0", False), ("", False), ("no", False)])
def test_is_offline(monkeypatch, var, value, expected):
    monkeypatch.delenv("LAVIS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv(var, value)
    assert is_offline() is expected


def test_offline_with_empty_cache_names_file_and_hint_without_network(http_server, lavis_cache, monkeypatch):
    url = http_server.add("/w/model_base.pth", DATA)
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    hint = "python -m lavis.zoo download blip_caption base_coco"
    with pytest.raises(OfflineError) as e:
        cached_file(url, fetch_hint=hint, progress=False)
    msg = str(e.value)
    assert "model_base.pth" in msg and hint in msg and str(lavis_cache / "models" / "model_base.pth") in msg
    assert "LAVIS_OFFLINE=1" in msg
    # without a hint the message still gives a command that fetches the file
    with pytest.raises(OfflineError) as e:
        download_url(url, lavis_cache / "x" / "model_base.pth")
    assert "download_url(" in str(e.value) and url in str(e.value)
    assert http_server.count() == 0
    assert not (lavis_cache / "models").exists() and not (lavis_cache / "x").exists()


def _suggested_command(message: str) -> str:
    """The command an offline error tells the user to run (the indented line after the colon)."""
    lines = message.splitlines()
    i = next(i for i, line in enumerate(lines) if line.endswith(":") and "network" in line)
    return lines[i + 1].strip()


def _run_shell(command: str) -> subprocess.CompletedProcess:
    """Run ``command`` as a user would, with this interpreter first on PATH (and without offline mode)."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               OMP_NUM_THREADS="1")
    env.pop("LAVIS_OFFLINE", None)
    return subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how", ["download_url", "cached_file"])
def test_the_command_an_offline_error_suggests_fetches_the_file(how, http_server, lavis_cache, monkeypatch):
    url = http_server.add("/w/hinted.pth", DATA)
    dest = lavis_cache / "x" / "hinted.pth"
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    with pytest.raises(OfflineError) as e:
        download_url(url, dest) if how == "download_url" else cached_file(url, subdir="x", progress=False)
    command = _suggested_command(str(e.value))
    assert command == e.value.fetch_hint and command.startswith("python -c ")
    res = _run_shell(command)
    assert res.returncode == 0, res.stderr
    assert dest.read_bytes() == DATA and http_server.full_gets("/w/hinted.pth") == 1


def test_offline_with_filled_cache_works_without_network(http_server, lavis_cache, monkeypatch):
    url = http_server.add("/w/model_large.pth", DATA)
    path = cached_file(url, sha256=SHA, progress=False)
    assert http_server.count() == 1
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    http_server.stop()  # no network at all now
    assert cached_file(url, sha256=SHA, progress=False) == path
    assert cached_file(url, progress=False) == path  # checked against the manifest record
    assert download_url(url, path) == path


def test_mirror_url_rewriting(monkeypatch):
    monkeypatch.delenv("LAVIS_MIRROR", raising=False)
    u = "https://storage.example.com/BLIP/models/model_base.pth"
    assert mirror_url(u) == u
    monkeypatch.setenv("LAVIS_MIRROR", "http://mirror.local:8080/lavis/")
    assert mirror_url(u) == "http://mirror.local:8080/lavis/storage.example.com/BLIP/models/model_base.pth"
    assert mirror_url("http://h:81/a/b?x=1") == "http://mirror.local:8080/lavis/h:81/a/b?x=1"
    assert mirror_url("https://user:pw@h/a") == "http://mirror.local:8080/lavis/h/a"
    already = "http://mirror.local:8080/lavis/h/a"
    assert mirror_url(already) == already
    assert mirror_url("/local/file.bin") == "/local/file.bin"


def test_download_through_mirror(http_server, lavis_cache, monkeypatch):
    http_server.add("/mirror/storage.example.com/BLIP/model_base.pth", DATA)
    monkeypatch.setenv("LAVIS_MIRROR", http_server.url("/mirror"))
    url = "https://storage.example.com/BLIP/model_base.pth"  # the real address, never contacted
    path = cached_file(url, sha256=SHA, progress=False)
    assert path.read_bytes() == DATA
    assert [r.path for r in http_server.requests] == ["/mirror/storage.example.com/BLIP/model_base.pth"]
    assert lookup(path)["url"] == url  # the manifest keeps the original address


def test_file_mirror_on_a_shared_folder(lavis_cache, tmp_path, monkeypatch):
    shared = tmp_path / "shared_mirror"
    (shared / "storage.example.com" / "BLIP").mkdir(parents=True)
    (shared / "storage.example.com" / "BLIP" / "model_large.pth").write_bytes(DATA)
    monkeypatch.setenv("LAVIS_MIRROR", shared.as_uri())
    path = cached_file("https://storage.example.com/BLIP/model_large.pth", sha256=SHA, progress=False)
    assert path.read_bytes() == DATA


def test_mirror_404_names_both_addresses(http_server, tmp_path, monkeypatch):
    monkeypatch.setenv("LAVIS_MIRROR", http_server.url("/mirror"))
    with pytest.raises(DownloadError) as e:
        download_url("https://h.example/a.bin", tmp_path / "a.bin", **FAST)
    assert "https://h.example/a.bin" in str(e.value) and http_server.url("/mirror/h.example/a.bin") in str(e.value)


# ---------------------------------------------------------------------------------------------
# the cache and its manifest
# ---------------------------------------------------------------------------------------------
def test_cached_file_records_manifest_on_first_download(http_server, lavis_cache):
    url = http_server.add("/w/blip/model_base_caption.pth", DATA)
    path = cached_file(url, progress=False)
    assert path == lavis_cache / "models" / "model_base_caption.pth"
    assert manifest_path() == lavis_cache / "manifest.json"
    rec = lookup(path)
    assert rec["url"] == url and rec["sha256"] == SHA and rec["size"] == len(DATA)
    assert rec["mtime"] == path.stat().st_mtime and rec["revision"] is None and rec["recorded_at"]
    on_disk = json.loads(manifest_path().read_text())
    assert on_disk["files"]["models/model_base_caption.pth"]["sha256"] == SHA  # relative: the cache can move
    # later uses: no request, same file
    assert cached_file(url, progress=False) == path
    assert http_server.count() == 1
    assert verify_file(path) == [] and verify_file(path, sha256=SHA, size=len(DATA)) == []


def test_cached_file_subdir_and_filename(http_server, lavis_cache):
    url = http_server.add("/w/weights.bin", DATA)
    path = cached_file(url, subdir="datasets/coco", filename="renamed.bin", progress=False)
    assert path == lavis_cache / "datasets" / "coco" / "renamed.bin" and path.read_bytes() == DATA


def test_changed_file_same_size_is_moved_aside_and_fetched_again_online(http_server, lavis_cache, caplog):
    url = http_server.add("/w/m.pth", DATA)
    path = cached_file(url, progress=False)
    changed = bytearray(DATA)
    changed[100] ^= 0xFF
    path.write_bytes(bytes(changed))  # same size, new mtime
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    problems = verify_file(path)
    assert len(problems) == 1 and "sha256" in problems[0] and SHA in problems[0]
    bad_sha = sha256_file(path)

    assert cached_file(url, progress=False) == path
    assert path.read_bytes() == DATA and http_server.count("/w/m.pth") == 2
    aside = path.with_name("m.pth.corrupt")
    assert aside.read_bytes() == bytes(changed)  # kept for a look, never used
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"][-1]
    assert str(path) in warning and bad_sha in warning and SHA in warning and str(aside) in warning
    assert lookup(path)["sha256"] == SHA and lookup(aside) is None
    assert cached_file(url, progress=False) == path and http_server.count("/w/m.pth") == 2


def test_changed_file_offline_is_an_error_naming_the_command(http_server, lavis_cache, monkeypatch):
    url = http_server.add("/w/m.pth", DATA)
    path = cached_file(url, progress=False)
    changed = bytearray(DATA)
    changed[100] ^= 0xFF
    path.write_bytes(bytes(changed))
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    hint = "python -m lavis.zoo download blip_caption base_coco"
    with pytest.raises(IntegrityError) as e:
        cached_file(url, progress=False, fetch_hint=hint)
    msg = str(e.value)
    assert str(path) in msg and SHA in msg and sha256_file(path) in msg and hint in msg
    assert "LAVIS_OFFLINE=1" in msg and e.value.fetch_hint == hint
    assert path.read_bytes() == bytes(changed) and not path.with_name("m.pth.corrupt").exists()
    assert http_server.count() == 1  # nothing downloaded offline


def test_truncated_file_is_caught_cheaply_and_fetched_again(http_server, lavis_cache, monkeypatch):
    url = http_server.add("/w/s.pth", DATA)
    path = cached_file(url, progress=False)
    with open(path, "r+b") as f:
        f.truncate(1000)
    with monkeypatch.context() as m:
        m.setattr(manifest, "sha256_file", lambda p: pytest.fail("a size change needs no hashing"))
        assert "size is 1000 bytes" in verify_file(path, full=False)[0]
        m.setenv("LAVIS_OFFLINE", "1")
        with pytest.raises(IntegrityError) as e:
            cached_file(url, progress=False)
        assert e.value.expected == len(DATA) and e.value.actual == 1000
    assert cached_file(url, progress=False).read_bytes() == DATA and http_server.full_gets("/w/s.pth") == 2


def test_force_downloads_again_and_offline_refuses(http_server, lavis_cache, monkeypatch):
    url = http_server.add("/w/f.pth", DATA)
    path = cached_file(url, progress=False)
    http_server.configure("/w/f.pth", data=DATA[::-1])  # the publisher replaced the file
    assert cached_file(url, progress=False).read_bytes() == DATA  # a good cached copy is used as it is
    assert cached_file(url, progress=False, force=True) == path
    assert path.read_bytes() == DATA[::-1] and lookup(path)["sha256"] == hashlib.sha256(DATA[::-1]).hexdigest()
    assert http_server.full_gets("/w/f.pth") == 2
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    with pytest.raises(OfflineError, match="offline"):
        cached_file(url, progress=False, force=True)


def test_download_url_fetches_a_damaged_destination_again(http_server, tmp_path, caplog):
    url = http_server.add("/w/d.bin", DATA)
    dest = tmp_path / "d.bin"
    dest.write_bytes(DATA[:500])
    assert download_url(url, dest, sha256=SHA, **FAST) == dest and dest.read_bytes() == DATA
    assert (tmp_path / "d.bin.corrupt").read_bytes() == DATA[:500]
    assert f"sha256 is {hashlib.sha256(DATA[:500]).hexdigest()}, expected {SHA} (pinned)" in caplog.text


def test_unchanged_file_is_not_hashed_on_use_but_full_verify_hashes(http_server, lavis_cache, monkeypatch):
    url = http_server.add("/w/big.pth", DATA)
    path = cached_file(url, sha256=SHA, progress=False)
    calls = []
    real = manifest.sha256_file
    monkeypatch.setattr(manifest, "sha256_file", lambda p: calls.append(p) or real(p))
    cached_file(url, sha256=SHA, progress=False)
    assert verify_file(path, full=False) == [] and calls == []
    assert verify_file(path, full=True) == [] and calls == [path]
    # a change that keeps size and mtime escapes the cheap check but not the full one
    st = path.stat()
    changed = bytearray(DATA)
    changed[0] ^= 1
    path.write_bytes(bytes(changed))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert verify_file(path, full=False) == []
    assert len(verify_file(path, full=True)) == 1


def test_touched_but_identical_file_is_used_and_record_refreshed(http_server, lavis_cache):
    url = http_server.add("/w/t.pth", DATA)
    path = cached_file(url, progress=False)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))  # e.g. copied without -p
    assert cached_file(url, progress=False) == path
    assert lookup(path)["mtime"] == path.stat().st_mtime


def test_pinned_value_mismatch_in_cache_is_refused(http_server, lavis_cache, monkeypatch):
    url = http_server.add("/w/p.pth", DATA)
    path = cached_file(url, progress=False)
    other = "0" * 64
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    with pytest.raises(IntegrityError) as e:
        cached_file(url, sha256=other, progress=False)
    assert other in str(e.value) and SHA in str(e.value) and "pinned" in str(e.value)
    assert path.exists()
    # online it is fetched again, and the server's file does not match the pin either: nothing is used
    monkeypatch.delenv("LAVIS_OFFLINE")
    with pytest.raises(IntegrityError, match="update the pinned sha256"):
        cached_file(url, sha256=other, progress=False, backoff=0.01)
    assert not path.exists() and path.with_name("p.pth.corrupt").read_bytes() == DATA


def test_hand_filled_cache_is_recorded_on_first_use(lavis_cache, monkeypatch):
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    path = lavis_cache / "models" / "copied.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(DATA)
    assert lookup(path) is None and verify_file(path) == []
    assert cached_file("https://h.example/x/copied.pth", progress=False) == path
    assert lookup(path)["sha256"] == SHA


def test_same_file_name_from_another_url_is_refused(http_server, lavis_cache):
    a = http_server.add("/a/model.pth", DATA)
    b = http_server.add("/b/model.pth", DATA[::-1])
    cached_file(a, progress=False)
    with pytest.raises(IntegrityError) as e:
        cached_file(b, progress=False)
    assert a in str(e.value) and b in str(e.value) and "distinct file name" in str(e.value)


def test_bad_sha_pin_is_rejected_early(lavis_cache):
    with pytest.raises(ValueError, match="64 hex digits"):
        cached_file("https://h.example/m.pth", sha256="abc123")


def test_corrupt_manifest_is_a_clear_error(lavis_cache):
    manifest_path().write_text("{not json")
    with pytest.raises(dl.LavisError, match="Delete it"):
        lookup(lavis_cache / "models" / "x.pth")


def test_forget_and_manifest_records(http_server, lavis_cache):
    url = http_server.add("/w/f.pth", DATA)
    path = cached_file(url, progress=False)
    assert dl.manifest_records() == {path: lookup(path)}
    assert dl.forget(path) is True and lookup(path) is None and dl.forget(path) is False


def test_verify_file_reports_missing(lavis_cache):
    assert verify_file(lavis_cache / "nope.bin") == [f"{lavis_cache / 'nope.bin'}: missing"]


def test_file_server_serves_a_folder_and_nothing_outside_it(tmp_path):
    from tests.helpers.http_server import FileServer

    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "f.bin").write_bytes(DATA)
    (tmp_path / "secret.txt").write_bytes(b"no")
    with FileServer(root=tmp_path / "root") as server:
        assert download_url(server.url("/sub/f.bin"), tmp_path / "f.bin", **FAST).read_bytes() == DATA
        with pytest.raises(DownloadError):
            download_url(server.url("/%2E%2E/secret.txt"), tmp_path / "s.txt", **FAST)
        assert [r.status for r in server.requests] == [200, 404]
