"""Hub-sourced zoo weights against a fake Hub on 127.0.0.1: ``huggingface_hub`` downloads into its own
cache, lavis records the file (sha256, size, resolved commit), and offline use reads the cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lavis.common.download import OfflineError, lookup
from lavis.models import load_model
from lavis.zoo.cli import main
from lavis.zoo.fetch import WeightsIntegrityError
from tests.helpers.http_server import FileServer
from tests.unit.zoo.zoo_helpers import COMMIT, hub_safetensors_bytes, outputs, serve_repo, zoo_commands

REPO = "lavis-test/blip-caption-tiny"


def test_hub_download_records_commit_and_works_offline(fake_hub, caches, add_model_type, reference,
                                                       monkeypatch, capsys):
    data = hub_safetensors_bytes(reference)
    serve_repo(fake_hub, REPO, {"model.safetensors": data})
    add_model_type("test_hub", load_finetuned=True, hf_repo=REPO)

    model = load_model("blip_caption", "test_hub", is_eval=True)
    ref_loss, ref_caps = outputs(reference)
    loss, caps = outputs(model)
    assert torch.equal(loss, ref_loss) and caps == ref_caps

    path = caches["hf"] / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / "model.safetensors"
    assert path.is_file() and path.read_bytes() == data  # in HF's own cache, at the resolved commit
    rec = lookup(path)
    assert rec["sha256"] == hashlib.sha256(data).hexdigest() and rec["size"] == len(data)
    assert rec["revision"] == COMMIT and rec["url"].endswith(f"/{REPO}/resolve/{COMMIT}/model.safetensors")
    gets = fake_hub.full_gets(f"/{REPO}/resolve/main/model.safetensors")
    assert gets == 1

    assert main(["list"]) == 0
    assert f"cached: {path}" in capsys.readouterr().out
    assert main(["verify", "--print"]) == 0
    out = capsys.readouterr().out
    assert f"  hf_revision: {COMMIT}" in out and "  hf_filename: model.safetensors" in out
    assert f"  hf_sha256: {rec['sha256']}" in out and f"  hf_size: {len(data)}" in out
    assert "paste under `model:`" in out and "test_hub.yaml" in out

    fake_hub.stop()  # no server from here on
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    again = load_model("blip_caption", "test_hub", is_eval=True)
    assert torch.equal(outputs(again)[0], ref_loss)

    # a changed file in the Hugging Face cache is caught, and never used
    blob = path.resolve()
    corrupted = bytearray(data)
    corrupted[-10] ^= 0xFF
    blob.write_bytes(bytes(corrupted))
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and str(path) in out and "--force" in out
    with pytest.raises(WeightsIntegrityError):
        load_model("blip_caption", "test_hub")


def test_hub_offline_with_empty_cache_names_file_and_command(fake_hub, caches, add_model_type, reference,
                                                             monkeypatch):
    import huggingface_hub.constants as hf_constants

    add_model_type("test_hub", load_finetuned=True, hf_repo=REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError) as err:
        load_model("blip_caption", "test_hub")
    msg = str(err.value)
    assert REPO in msg and "model.safetensors" in msg and str(caches["hf"]) in msg
    assert zoo_commands(msg) == [["download", "blip_caption", "test_hub"]]
    assert fake_hub.count() == 0

    # that command, run where the Hub is reachable, fills the cache the offline load reads
    serve_repo(fake_hub, REPO, {"model.safetensors": hub_safetensors_bytes(reference)})
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert main(zoo_commands(msg)[0]) == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    fake_hub.stop()
    assert torch.equal(outputs(load_model("blip_caption", "test_hub", is_eval=True))[0], outputs(reference)[0])


def test_hub_without_safetensors_falls_back_to_pytorch_model_bin(fake_hub, add_model_type, reference, tmp_path):
    bin_path = tmp_path / "pytorch_model.bin"
    torch.save(dict(reference.blip.state_dict()), bin_path)
    serve_repo(fake_hub, REPO, {"pytorch_model.bin": bin_path.read_bytes()}, missing=("model.safetensors",))
    add_model_type("test_hub", load_finetuned=True, hf_repo=REPO)
    model = load_model("blip_caption", "test_hub", is_eval=True)
    assert torch.equal(outputs(model)[0], outputs(reference)[0])
    assert fake_hub.count(f"/{REPO}/resolve/main/model.safetensors") >= 1


def test_pinned_revision_and_wrong_pinned_sha256(fake_hub, caches, add_model_type, reference):
    data = hub_safetensors_bytes(reference)
    serve_repo(fake_hub, REPO, {"model.safetensors": data})
    wrong = "f" * 64
    add_model_type("test_pinned", load_finetuned=True, hf_repo=REPO, hf_revision=COMMIT, hf_sha256=wrong)
    with pytest.raises(WeightsIntegrityError) as err:
        load_model("blip_caption", "test_pinned")
    msg = str(err.value)
    assert wrong in msg and hashlib.sha256(data).hexdigest() in msg and "model.safetensors" in msg
    assert "python -m lavis.zoo download blip_caption test_pinned" in msg
    # the pinned revision was asked for, not main
    assert fake_hub.count(f"/{REPO}/resolve/{COMMIT}/model.safetensors") >= 1
    assert fake_hub.count(f"/{REPO}/resolve/main/model.safetensors") == 0


def test_hf_endpoint_environment_variable_is_honoured(caches, add_model_type, reference, tmp_path):
    """A fresh process with HF_ENDPOINT set downloads from that endpoint (no monkeypatching)."""
    yaml_path = add_model_type("test_hub", load_finetuned=True, hf_repo=REPO)
    code = (
        "from lavis.models.blip.blip_caption import BlipCaption as B\n"
        f"B.PRETRAINED_MODEL_CONFIG_DICT = dict(B.PRETRAINED_MODEL_CONFIG_DICT, test_hub={str(yaml_path)!r})\n"
        "from lavis.zoo.cli import main\n"
        "raise SystemExit(main(['download', 'blip_caption', 'test_hub']))\n"
    )
    with FileServer() as server:
        serve_repo(server, REPO, {"model.safetensors": hub_safetensors_bytes(reference)})
        env = dict(os.environ, HF_ENDPOINT=server.base_url, HF_HOME=str(caches["hf_home"]), OMP_NUM_THREADS="1")
        env.pop("HF_HUB_CACHE", None)
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert server.full_gets(f"/{REPO}/resolve/main/model.safetensors") == 1
    printed = Path(res.stdout.strip().splitlines()[-1])
    assert printed.is_file() and printed.parent.name == COMMIT and str(caches["hf"]) in str(printed)


def test_unreachable_hub_falls_back_to_the_original_url(caches, add_model_type, reference, monkeypatch, caplog):
    """The Hub not answering (hf_hub_download stubbed: a real unreachable endpoint costs HF's retries,
    ~20 s) sends the zoo to the original URL; the second Hub file is only looked for in the cache."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from tests.unit.zoo.zoo_helpers import MIRROR_PATH, REAL_BASE_URL, lavis_pth_bytes

    calls = []

    def unreachable(repo_id, filename, *, revision=None, local_files_only=False, force_download=False):
        calls.append((filename, local_files_only))
        raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub.")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    add_model_type("test_both", load_finetuned=True, hf_repo=REPO, finetuned=REAL_BASE_URL)
    with FileServer() as server:
        server.add(MIRROR_PATH, lavis_pth_bytes(reference))
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        model = load_model("blip_caption", "test_both", is_eval=True)
        assert server.full_gets(MIRROR_PATH) == 1
    assert calls == [("model.safetensors", False), ("pytorch_model.bin", True)]
    assert torch.equal(outputs(model)[0], outputs(reference)[0])
    assert "could not reach the Hub" in caplog.text and "trying the next source" in caplog.text


def test_damaged_hub_file_is_downloaded_again_online_and_named_offline(fake_hub, caches, add_model_type, reference,
                                                                       monkeypatch, capsys, caplog):
    data = hub_safetensors_bytes(reference)
    serve_repo(fake_hub, REPO, {"model.safetensors": data})
    add_model_type("test_hub", load_finetuned=True, hf_repo=REPO)
    main_file = f"/{REPO}/resolve/main/model.safetensors"
    load_model("blip_caption", "test_hub")
    path = caches["hf"] / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / "model.safetensors"
    corrupted = bytearray(data)
    corrupted[-10] ^= 0xFF
    path.resolve().write_bytes(bytes(corrupted))

    # offline: never used, and the error names the command that fetches it again
    monkeypatch.setenv("LAVIS_OFFLINE", "1")
    with pytest.raises(WeightsIntegrityError) as err:
        load_model("blip_caption", "test_hub")
    msg = str(err.value)
    assert str(path) in msg and hashlib.sha256(data).hexdigest() in msg
    assert zoo_commands(msg) == [["download", "blip_caption", "test_hub", "--force"]]
    assert main(["verify"]) == 1
    (verify_command,) = zoo_commands(capsys.readouterr().out)
    assert verify_command == ["download", "blip_caption", "test_hub", "--source", "hf", "--force", "--no-assets"]

    # online, both commands fetch it again
    monkeypatch.delenv("LAVIS_OFFLINE")
    assert main(zoo_commands(msg)[0]) == 0
    assert path.read_bytes() == data and fake_hub.full_gets(main_file) == 2
    path.resolve().write_bytes(bytes(corrupted))
    assert main(verify_command) == 0
    assert path.read_bytes() == data and fake_hub.full_gets(main_file) == 3

    # and loading the model online repairs it by itself, with a warning naming the file
    path.resolve().write_bytes(bytes(corrupted))
    caplog.clear()
    model = load_model("blip_caption", "test_hub", is_eval=True)
    assert path.read_bytes() == data and fake_hub.full_gets(main_file) == 4
    assert str(path) in caplog.text and "downloading model.safetensors of" in caplog.text
    assert torch.equal(outputs(model)[0], outputs(reference)[0])
    capsys.readouterr()
    assert main(["verify"]) == 0
