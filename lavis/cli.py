"""The ``train`` and ``evaluate`` command lines. ``train.py`` / ``evaluate.py`` call these, and
tests call ``train_main(argv)`` / ``evaluate_main(argv)`` directly."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, Sequence

from lavis.common.errors import LavisError

if TYPE_CHECKING:
    from lavis.common.config import Config


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg-path", required=True, help="experiment YAML (model, datasets, run sections)")
    parser.add_argument(
        "--options",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override config entries, e.g. run.max_epoch=2 run.init_lr=1e-4 (applied last)",
    )
    return parser


def run(cfg: "Config", evaluate_only: bool = False) -> dict[str, Any]:
    """Build task, data, model and runner from a validated config; train or evaluate."""
    import torch.distributed as tdist

    from lavis.common import dist
    from lavis.common.registry import registry
    from lavis.common.utils import seed_everything
    from lavis.tasks import setup_task

    dist.init_distributed(cfg.run.dist_backend)
    try:
        seed_everything(cfg.run.seed)  # same seed on every rank: identical initial weights
        task = setup_task(cfg)
        datasets = task.build_datasets(cfg)
        model = task.build_model(cfg)
        runner = registry.get_runner_class(cfg.run.runner)(cfg=cfg, task=task, model=model, datasets=datasets)
        return runner.evaluate() if evaluate_only else runner.train()
    finally:
        if tdist.is_available() and tdist.is_initialized():
            tdist.destroy_process_group()


def _main(argv: Sequence[str] | None, evaluate_only: bool) -> dict[str, Any]:
    from lavis.common.config import Config

    what = "Evaluate" if evaluate_only else "Train"
    args = build_parser(f"{what} a lavis model from an experiment config.").parse_args(argv)
    options = list(args.options) + (["run.evaluate=true"] if evaluate_only else [])
    cfg = Config.from_file(args.cfg_path, options)
    return run(cfg, evaluate_only=evaluate_only)


def train_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python train.py --cfg-path X.yaml [--options k=v ...]``; returns the final metrics."""
    return _main(argv, evaluate_only=False)


def evaluate_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python evaluate.py --cfg-path X.yaml [--options k=v ...]``; returns the metrics."""
    return _main(argv, evaluate_only=True)


def console(entry) -> None:
    """Run ``entry`` as a program: lavis errors print as one clear message and exit with status 2."""
    try:
        entry(sys.argv[1:])
    except LavisError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def console_train() -> None:
    console(train_main)


def console_evaluate() -> None:
    console(evaluate_main)
