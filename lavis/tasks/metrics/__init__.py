"""Metric helpers shared by tasks and usable on their own (e.g. on files written by evaluate.py)."""

from lavis.tasks.metrics.caption_metrics import (
    DEFAULT_METRICS,
    METRIC_OUTPUTS,
    aggregate,
    canonical_metrics,
    check_same_images,
    load_caption_gt,
    load_results,
    metric_problems,
    score_captions,
    spice_problem,
)
from lavis.tasks.metrics.errors import JavaNotFoundError, MetricError

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_OUTPUTS",
    "JavaNotFoundError",
    "MetricError",
    "aggregate",
    "canonical_metrics",
    "check_same_images",
    "load_caption_gt",
    "load_results",
    "metric_problems",
    "score_captions",
    "spice_problem",
]
