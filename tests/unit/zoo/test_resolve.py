"""Weights are resolved once, in lavis.zoo; the model_zoo object lives there; the manifest's advice works."""

from __future__ import annotations

import io

import pytest
import torch

from lavis.common.download import lookup, manifest_path
from lavis.common.errors import LavisError
from lavis.models import load_model
from lavis.zoo import fetch as zoo_fetch
from lavis.zoo.cli import main
from tests.helpers.http_server import FileServer
from tests.unit.zoo.zoo_helpers import MIRROR_PATH, REAL_BASE_URL, lavis_pth_bytes, outputs, tiny, zoo_commands


@pytest.fixture
def fetch_calls(monkeypatch):
    """Every call of the zoo's fetch (the one step that turns weight sources into a local file)."""
    calls = []
    real = zoo_fetch.fetch

    def counting(sources, **kw):
        calls.append([s.location for s in sources])
        return real(sources, **kw)

    monkeypatch.setattr(zoo_fetch, "fetch", counting)
    return calls


def test_weights_are_resolved_once_per_load(add_model_type, caches, reference, fetch_calls, monkeypatch, tmp_path):
    add_model_type("test_url", load_finetuned=True, finetuned=REAL_BASE_URL)
    with FileServer() as server:
        server.add(MIRROR_PATH, lavis_pth_bytes(reference))
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        model = load_model("blip_caption", "test_url", is_eval=True)
        assert fetch_calls == [[REAL_BASE_URL]]

        other = tiny(3)
        other.load_checkpoint(REAL_BASE_URL)  # a URL: resolved once, then loaded from the cache
        assert fetch_calls == [[REAL_BASE_URL], [REAL_BASE_URL]] and server.full_gets(MIRROR_PATH) == 1
    assert torch.equal(outputs(model)[0], outputs(reference)[0])
    assert torch.equal(outputs(other)[0], outputs(reference)[0])

    path = tmp_path / "w.pth"
    torch.save(reference.state_dict(), path)
    tiny(4).load_checkpoint(path)  # a local path needs no resolving
    assert len(fetch_calls) == 2


def test_a_url_checkpoint_that_does_not_fit_names_the_url_and_the_file(caches, monkeypatch):
    url = "https://example.org/ckpt/wrong.pth"
    with FileServer() as server:
        data = io.BytesIO()
        torch.save({"something.else": torch.zeros(2)}, data)
        server.add("/example.org/ckpt/wrong.pth", data.getvalue())
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        with pytest.raises(LavisError) as err:
            tiny(0).load_checkpoint(url)
    msg = str(err.value)
    assert f"{caches['lavis'] / 'models' / 'wrong.pth'} (from {url}) does not fit BlipCaption" in msg
    assert "unexpected keys ['something.else']" in msg


def test_model_zoo_has_one_home():
    import lavis.models
    import lavis.zoo
    from lavis.zoo.model_zoo import ModelZoo, model_zoo

    assert lavis.models.model_zoo is model_zoo and lavis.zoo.model_zoo is model_zoo
    assert isinstance(model_zoo, ModelZoo)
    assert ("blip_caption", "tiny", "random init") in list(model_zoo)


def test_an_unreadable_manifest_names_a_fix_that_works(add_model_type, caches, reference, monkeypatch, capsys):
    add_model_type("test_url", load_finetuned=True, finetuned=REAL_BASE_URL)
    with FileServer() as server:
        server.add(MIRROR_PATH, lavis_pth_bytes(reference))
        monkeypatch.setenv("LAVIS_MIRROR", server.base_url)
        assert main(["download", "blip_caption", "test_url", "--no-assets"]) == 0
    manifest_path().write_text("{half a manif")
    capsys.readouterr()
    assert main(["verify"]) == 1
    err = capsys.readouterr().err
    assert str(manifest_path()) in err and "Delete it" in err
    manifest_path().unlink()  # what the message says to do first
    (command,) = zoo_commands(err)
    assert command == ["verify"]
    assert main(command) == 0
    assert "UNCHECKED" in capsys.readouterr().out
    monkeypatch.setenv("LAVIS_OFFLINE", "1")  # the file is recorded again on its next use
    load_model("blip_caption", "test_url")
    assert lookup(caches["lavis"] / "models" / "blip_coco_caption_base.pth") is not None
