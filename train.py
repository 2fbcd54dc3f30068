"""Train a model from an experiment config: `python train.py --cfg-path configs/demo/caption_shapes.yaml`."""

from typing import Any, Sequence

from lavis.cli import console, train_main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``train.py`` as a function: the arguments after the program name; returns the final metrics."""
    return train_main(argv)


if __name__ == "__main__":
    console(train_main)
