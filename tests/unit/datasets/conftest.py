"""Fixtures of the dataset tests: a private cache root and one small generated shapes data set."""

from __future__ import annotations

from pathlib import Path

import pytest

from lavis.datasets.synthetic.shapes import ShapesConfig, ensure_generated

SMALL = dict(seed=3, image_size=64, num_train=30, num_val=12, num_test=10)


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``LAVIS_CACHE_HOME`` points at a fresh folder for every test."""
    root = tmp_path / "lavis_cache"
    monkeypatch.setenv("LAVIS_CACHE_HOME", str(root))
    return root


@pytest.fixture(scope="session")
def small_cfg() -> ShapesConfig:
    return ShapesConfig(**SMALL)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory, small_cfg: ShapesConfig) -> Path:
    """A small shapes data set generated once per session (treat as read-only)."""
    out = tmp_path_factory.mktemp("shapes") / "small"
    ensure_generated(out, small_cfg)
    return out
