"""Runner unit tests: the toy components live in ``tests/toy``; one intra-op thread keeps tiny
ops fast (and deterministic) on a loaded 2-core machine."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield
