"""Fixtures for the model-zoo tests: isolated lavis and Hugging Face caches, test-only model types
(the tiny network, with weights from a URL or a Hub repo) and the reference network they serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from omegaconf import OmegaConf

from lavis.models.blip.blip_caption import BlipCaption
from tests.helpers.fixtures import http_server, lavis_cache  # noqa: F401
from tests.helpers.http_server import FileServer
from tests.unit.zoo.zoo_helpers import tiny


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def caches(lavis_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:  # noqa: F811
    """An empty lavis cache and an empty Hugging Face cache, online, no mirror."""
    import huggingface_hub.constants as hf_constants

    hf_home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    return {"lavis": lavis_cache, "hf": hf_home / "hub", "hf_home": hf_home}


@pytest.fixture
def fake_hub(caches, monkeypatch):
    """A started FileServer that ``huggingface_hub`` uses as its endpoint (what HF_ENDPOINT sets);
    ``zoo_helpers.serve_repo`` puts a repo on it."""
    import huggingface_hub.constants as hf_constants

    with FileServer() as server:
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.base_url)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.base_url + "/{repo_id}/resolve/{revision}/{filename}")
        yield server


@pytest.fixture
def add_model_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``add_model_type(name, **model_keys)``: a test-only ``blip_caption`` type, the tiny network
    with the given ``model`` keys (weight sources, pins), registered for this test only."""
    types = dict(BlipCaption.PRETRAINED_MODEL_CONFIG_DICT)
    monkeypatch.setattr(BlipCaption, "PRETRAINED_MODEL_CONFIG_DICT", types)

    def add(name: str, **model_keys: Any) -> Path:
        cfg = OmegaConf.load(BlipCaption.default_config_path("tiny"))
        cfg.model.model_type = name
        for key, value in model_keys.items():
            cfg.model[key] = value
        path = tmp_path / f"{name}.yaml"
        OmegaConf.save(cfg, path)
        types[name] = str(path)
        return path

    return add


@pytest.fixture(scope="session")
def reference() -> BlipCaption:
    """The tiny network whose weights the test servers serve."""
    return tiny(0)
