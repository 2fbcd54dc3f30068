"""Registered tasks."""

from lavis.tasks.base_task import BaseTask

__all__ = ["BaseTask", "setup_task"]


def setup_task(cfg) -> BaseTask:
    """The task named by ``cfg.run.task``, set up from ``cfg``."""
    from lavis.common.registry import registry

    return registry.get_task_class(cfg.run.task).setup_task(cfg)
