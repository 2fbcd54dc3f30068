"""Errors of the metric helpers. Each message says what went wrong and how to fix it."""

from __future__ import annotations

from lavis.common.errors import LavisError


class MetricError(LavisError):
    """Results cannot be scored: bad ground truth, ids that do not match, or a scorer that failed."""


class JavaNotFoundError(MetricError):
    """The Java runtime that the PTB tokenizer, METEOR and SPICE need is not installed."""
