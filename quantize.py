"""Quantize a model after training: `python quantize.py --cfg-path configs/demo/quantize_shapes.yaml`."""

from typing import Any, Sequence

from lavis.cli import console
from lavis.quantization.cli import quantize_main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``quantize.py`` as a function: the arguments after the program name; returns the report."""
    return quantize_main(argv)


if __name__ == "__main__":
    console(quantize_main)
