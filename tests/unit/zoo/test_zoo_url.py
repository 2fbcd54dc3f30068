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
from tests.helpers.http_server import FileServer
from tests.unit.zoo.zoo_helpers import MIRROR_PATH, REAL_BASE_URL, lavis_pth_bytes, outputs

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


def test_offline_with_empty_cache_names_file_and_command(url_type, monkeypatch, capsys):
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    with pytest.raises(OfflineError) as err:
        load_model("blip_caption", "test_url")
    msg = str(err.value)
    assert isinstance(err.value, CheckpointError)
    assert str(url_type["lavis"] / "models" / CACHED_NAME) in msg
    assert "python -m lavis.zoo download blip_caption test_url" in msg

    assert main(["download", "blip_caption", "test_url"]) == 1
    assert "python -m lavis.zoo download blip_caption test_url" in capsys.readouterr().err
    assert main(["path", "blip_caption", "test_url"]) == 1


def test_real_entry_offline_names_both_sources(caches, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # HF's own switch counts too
    with pytest.raises(OfflineError) as err:
        load_model("blip_caption", "base_coco")
    msg = str(err.value)
    assert "Salesforce/blip-image-captioning-base" in msg and "model.safetensors" in msg
    assert str(caches["lavis"] / "models" / CACHED_NAME) in msg
    assert "`python -m lavis.zoo download blip_caption base_coco`" in msg


def test_changed_file_is_caught_by_verify_and_never_used(url_type, reference, monkeypatch, capsys):
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
        assert hashlib.sha256(data).hexdigest() in out and bad_sha in out and "--force" in out

        env = dict(os.environ, OMP_NUM_THREADS="1")
        res = subprocess.run([sys.executable, "-m", "lavis.zoo", "verify"], env=env, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 1 and str(cached) in res.stdout

        with pytest.raises(WeightsIntegrityError, match=CACHED_NAME):
            load_model("blip_caption", "test_url")

        # the fix the message gives: fetch it again
        assert main(["download", "blip_caption", "test_url", "--force", "--no-assets"]) == 0
        assert cached.read_bytes() == data and server.full_gets(MIRROR_PATH) == 2
        capsys.readouterr()
        assert main(["verify"]) == 0


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
    with FileServer() as server:
        server.add("/example.org/ckpt/other.pth", b"weights")
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        assert main(["download-url", "https://example.org/ckpt/other.pth"]) == 0
    path = caches["lavis"] / "models" / "other.pth"
    assert capsys.readouterr().out.strip() == str(path) and path.read_bytes() == b"weights"
    assert lookup(path)["url"] == "https://example.org/ckpt/other.pth"
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    with pytest.raises(OfflineError, match="python -m lavis.zoo download-url https://example.org/ckpt/missing.pth"):
        from lavis.zoo import resolve_location

        resolve_location("https://example.org/ckpt/missing.pth", owner="test")
