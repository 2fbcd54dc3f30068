"""Session-wide test hygiene."""

import logging

import pytest


@pytest.fixture(autouse=True)
def _lavis_logger_propagates():
    """Runners call ``setup_logging``, which stops the ``lavis`` logger from propagating (its own
    handler prints); restore propagation so each test's ``caplog`` sees lavis records."""
    logger = logging.getLogger("lavis")
    logger.propagate = True
    yield
    logger.propagate = True
