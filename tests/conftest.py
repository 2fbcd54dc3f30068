"""Session-wide test hygiene."""

import logging

import pytest
import torch


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
