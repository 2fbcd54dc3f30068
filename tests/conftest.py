"""Session-wide test hygiene."""

import logging
import os

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (or set LAVIS_SLOW_TESTS=1)")


def pytest_collection_modifyitems(config, items):
    """``slow`` tests run only when asked for; ``gpu`` tests only where CUDA is present."""
    run_slow = config.getoption("--run-slow") or bool(os.environ.get("LAVIS_SLOW_TESTS"))
    has_cuda = torch.cuda.is_available()
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow or LAVIS_SLOW_TESTS=1"))
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="gpu: needs CUDA"))


@pytest.fixture(autouse=True)
def _lavis_logger_propagates():
    """Runners call ``setup_logging``, which stops the ``lavis`` logger from propagating (its own
    handler prints); restore propagation so each test's ``caplog`` sees lavis records."""
    logger = logging.getLogger("lavis")
    logger.propagate = True
    yield
    logger.propagate = True


@pytest.fixture
def one_thread():
    """Run a test with one intra-op thread: tiny ops are as fast, deterministic, and do not collapse
    when other processes compete for this 2-core machine (OpenMP threads spin-waiting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
