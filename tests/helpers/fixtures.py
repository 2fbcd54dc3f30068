"""Pytest fixtures for download tests. Import them into a test module (or a conftest.py) to use them::

    from tests.helpers.fixtures import http_server, lavis_cache  # noqa: F401

- ``http_server``: a started :class:`tests.helpers.http_server.FileServer` on 127.0.0.1, stopped after the test;
- ``lavis_cache``: an empty cache folder set as ``LAVIS_CACHE_HOME``, with ``LAVIS_OFFLINE``,
  ``HF_HUB_OFFLINE`` and ``LAVIS_MIRROR`` removed from the environment for the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.http_server import FileServer

__all__ = ["http_server", "lavis_cache"]


@pytest.fixture
def http_server() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


@pytest.fixture
def lavis_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("LAVIS_CACHE_HOME", str(cache))
    for var in ("LAVIS_OFFLINE", "HF_HUB_OFFLINE", "LAVIS_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    return cache
