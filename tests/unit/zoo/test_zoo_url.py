"""URL-sourced zoo weights: download through LAVIS_MIRROR, the converter, offline use, verify."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import torch

from lavis.common.download import OfflineError, lookup
from lavis.common.errors import CheckpointError
from lavis.models import load_model
from lavis.zoo.cli import main
from lavis.zoo.fetch import WeightsIntegrityError
from lavis.zoo.resolve import resolve_location
from tests.helpers.http_server import FileServer
from tests.unit.zoo.zoo_helpers import MIRROR_PATH, REAL_BASE_URL, lavis_pth_bytes, outputs, zoo_commands

CACHED_NAME = "blip_coco_caption_base.pth"


@pytest.fixture
def url_type(add_model_type, caches):
    """A test-only type whose finetuned weights are at the real base_coco URL (and nowhere else)."""
    add_model_type("test_url", load_finetuned=True, finetuned=REAL_BASE_URL)
    return caches


def test_download_through_mirror_then_load_offline(url_type, reference, monkeypatch, capsys):
    data = lavis_pth_bytes(reference)
    cached = url_type["lavis"] / "models" / CACHED_NAME
    with FileServer() as server:
        server.add(MIRROR_PATH, data)
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        assert main(["download", "blip_caption", "test_url"]) == 0
        assert capsys.readouterr().out.strip() == str(cached)
        assert cached.read_bytes() == data and server.full_gets(MIRROR_PATH) == 1
        rec = lookup(cached)  # recorded against the real URL, not the mirror's
        assert rec["url"] == REAL_BASE_URL
        assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["size"] == len(data)

        model = load_model("blip_caption", "test_url", is_eval=True)  # from the cache, through the converter
        assert server.count(MIRROR_PATH) == 1
    ref_loss, ref_caps = outputs(reference)
    loss, caps = outputs(model)
    assert torch.equal(loss, ref_loss) and caps == ref_caps

    # the server is gone: offline mode works from the cache alone
    monkeypatch.delenv("LAVIS_MIRROR")
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    again = load_model("blip_caption", "test_url", is_eval=True)
    assert torch.equal(outputs(again)[0], ref_loss)
    assert main(["path", "blip_caption", "test_url"]) == 0
    assert capsys.readouterr().out.strip() == str(cached)


def test_load_model_downloads_when_online(url_type, reference, monkeypatch):
    with FileServer() as server:
        server.add(MIRROR_PATH, lavis_pth_bytes(reference))
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        model = load_model("blip_caption", "test_url", is_eval=True)
        assert server.full_gets(MIRROR_PATH) == 1
    assert torch.equal(outputs(model)[0], outputs(reference)[0])


def test_offline_with_empty_cache_names_file_and_command(url_type, reference, monkeypatch, capsys):
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    with pytest.raises(OfflineError) as err:
        load_model("blip_caption", "test_url")
    msg = str(err.value)
    assert isinstance(err.value, CheckpointError)
    assert str(url_type["lavis"] / "models" / CACHED_NAME) in msg
    assert zoo_commands(msg) == [["download", "blip_caption", "test_url"]]

    assert main(["download", "blip_caption", "test_url"]) == 1
    assert zoo_commands(capsys.readouterr().err) == [["download", "blip_caption", "test_url"]]
    assert main(["path", "blip_caption", "test_url"]) == 1
    (command,) = zoo_commands(capsys.readouterr().err)

    # the command the messages name, run where the network is reachable, makes the model load offline
    monkeypatch.delenv("LAVIS_OFFLINE")
    with FileServer() as server:
        server.add(MIRROR_PATH, lavis_pth_bytes(reference))
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        assert main(command) == 0
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    assert torch.equal(outputs(load_model("blip_caption", "test_url", is_eval=True))[0], outputs(reference)[0])


def test_real_entry_offline_names_both_sources(caches, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # HF's own switch counts too
    with pytest.raises(OfflineError) as err:
        load_model("blip_caption", "base_coco")
    msg = str(err.value)
    assert "Salesforce/blip-image-captioning-base" in msg and "model.safetensors" in msg
    assert str(caches["lavis"] / "models" / CACHED_NAME) in msg
    assert "`python -m lavis.zoo download blip_caption base_coco`" in msg


def test_changed_file_is_caught_by_verify_and_the_command_it_names_repairs_it(url_type, reference, monkeypatch,
                                                                             capsys):
    data = lavis_pth_bytes(reference)
    cached = url_type["lavis"] / "models" / CACHED_NAME
    with FileServer() as server:
        server.add(MIRROR_PATH, data)
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        assert main(["download", "blip_caption", "test_url", "--no-assets"]) == 0
        capsys.readouterr()
        assert main(["verify"]) == 0
        assert "0 mismatch" in capsys.readouterr().out

        corrupted = bytearray(data)
        corrupted[len(corrupted) // 2] ^= 0xFF  # same size, other bytes
        cached.write_bytes(bytes(corrupted))
        bad_sha = hashlib.sha256(corrupted).hexdigest()

        assert main(["verify"]) == 1
        out = capsys.readouterr().out
        assert "MISMATCH" in out and str(cached) in out
        assert hashlib.sha256(data).hexdigest() in out and bad_sha in out
        env = dict(os.environ, OMP_NUM_THREADS="1")
        res = subprocess.run([sys.executable, "-m", "lavis.zoo", "verify"], env=env, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 1 and str(cached) in res.stdout

        # the command verify names fetches it again (base_coco's original URL is the same file as test_url's)
        (command,) = zoo_commands(out)
        assert command == ["download", "blip_caption", "base_coco", "--source", "url", "--force", "--no-assets"]
        assert main(command) == 0
        assert cached.read_bytes() == data and server.full_gets(MIRROR_PATH) == 2
        capsys.readouterr()
        assert main(["verify"]) == 0


def test_damaged_file_is_fetched_again_online_and_named_offline(url_type, reference, monkeypatch, caplog):
    data = lavis_pth_bytes(reference)
    cached = url_type["lavis"] / "models" / CACHED_NAME
    aside = cached.with_name(CACHED_NAME + ".corrupt")
    with FileServer() as server:
        server.add(MIRROR_PATH, data)
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        load_model("blip_caption", "test_url")
        cached.write_bytes(data[: len(data) // 2])  # truncated

        # offline: never used, an error that names the command
        monkeypatch.setenv("LAVIS_OFFLINE", "1")
        with pytest.raises(WeightsIntegrityError) as err:
            load_model("blip_caption", "test_url")
        msg = str(err.value)
        assert str(cached) in msg and f"size is {len(data) // 2} bytes, expected {len(data)} bytes" in msg
        (command,) = zoo_commands(msg)
        assert command == ["download", "blip_caption", "test_url"]
        assert cached.stat().st_size == len(data) // 2 and server.full_gets(MIRROR_PATH) == 1

        # online, that command repairs it: the damaged copy is moved aside, with a warning
        monkeypatch.delenv("LAVIS_OFFLINE")
        assert main(command) == 0
        assert cached.read_bytes() == data and aside.stat().st_size == len(data) // 2
        assert server.full_gets(MIRROR_PATH) == 2
        warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"][-1]
        assert str(cached) in warning and "size is" in warning and str(aside) in warning

        # and so does simply loading the model online
        cached.write_bytes(b"\0" * len(data))
        model = load_model("blip_caption", "test_url", is_eval=True)
        assert server.full_gets(MIRROR_PATH) == 3 and cached.read_bytes() == data
    assert torch.equal(outputs(model)[0], outputs(reference)[0])


def test_force_downloads_again_and_is_refused_offline(url_type, reference, monkeypatch, capsys):
    data = lavis_pth_bytes(reference)
    with FileServer() as server:
        server.add(MIRROR_PATH, data)
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        assert main(["download", "blip_caption", "test_url", "--no-assets"]) == 0
        assert main(["download", "blip_caption", "test_url", "--no-assets"]) == 0
        assert server.full_gets(MIRROR_PATH) == 1  # cached and fine: not downloaded again
        assert main(["download", "blip_caption", "test_url", "--no-assets", "--force"]) == 0
        assert server.full_gets(MIRROR_PATH) == 2
        capsys.readouterr()
        monkeypatch.setenv("LAVIS_OFFLINE", "1")
        assert main(["download", "blip_caption", "test_url", "--force"]) == 1
        assert "offline mode is on" in capsys.readouterr().err and server.full_gets(MIRROR_PATH) == 2


def test_wrong_pinned_sha256_stops_with_file_expected_actual(add_model_type, caches, reference, monkeypatch):
    data = lavis_pth_bytes(reference)
    wrong = "e" * 64
    add_model_type("test_url_pinned", load_finetuned=True, finetuned=REAL_BASE_URL, finetuned_sha256=wrong)
    with FileServer() as server:
        server.add(MIRROR_PATH, data)
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        with pytest.raises(WeightsIntegrityError) as err:
            load_model("blip_caption", "test_url_pinned")
    msg = str(err.value)
    assert CACHED_NAME in msg and wrong in msg and hashlib.sha256(data).hexdigest() in msg
    assert "python -m lavis.zoo download blip_caption test_url_pinned" in msg
    assert not (caches["lavis"] / "models" / CACHED_NAME).exists()  # nothing wrong is kept


def test_download_url_of_any_checkpoint(caches, monkeypatch, capsys):
    url = "https://example.org/ckpt/other.pth"
    with FileServer() as server:
        server.add("/example.org/ckpt/other.pth", b"weights")
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        assert main(["download-url", url]) == 0
        path = caches["lavis"] / "models" / "other.pth"
        assert capsys.readouterr().out.strip() == str(path) and path.read_bytes() == b"weights"
        assert lookup(path)["url"] == url

        # damaged: offline an error naming the command, which (with --force) fetches it again
        path.write_bytes(b"weighs")
        monkeypatch.setenv("LAVIS_OFFLINE", "1")
        with pytest.raises(WeightsIntegrityError) as err:
            resolve_location(url, owner="test")
        assert zoo_commands(str(err.value)) == [["download-url", url]]
        monkeypatch.delenv("LAVIS_OFFLINE")
        assert main(["download-url", url, "--force"]) == 0
        assert path.read_bytes() == b"weights" and server.full_gets("/example.org/ckpt/other.pth") == 2

        # and verify names the --force command for it
        path.write_bytes(b"weighs")
        capsys.readouterr()
        assert main(["verify"]) == 1
        (command,) = zoo_commands(capsys.readouterr().out)
        assert command == ["download-url", url, "--force"]
        assert main(command) == 0 and path.read_bytes() == b"weights"

    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    with pytest.raises(OfflineError) as err:
        resolve_location("https://example.org/ckpt/missing.pth", owner="test")
    assert zoo_commands(str(err.value)) == [["download-url", "https://example.org/ckpt/missing.pth"]]
