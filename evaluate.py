"""Evaluate a model from an experiment config: `python evaluate.py --cfg-path configs/demo/caption_shapes.yaml`."""

from typing import Any, Sequence

from lavis.cli import console, evaluate_main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``evaluate.py`` as a function: the arguments after the program name; returns the metrics."""
    return evaluate_main(argv)


if __name__ == "__main__":
    console(evaluate_main)
