"""Evaluate a model from an experiment config: `python evaluate.py --cfg-path configs/demo/caption_shapes.yaml`."""

from lavis.cli import console, evaluate_main

if __name__ == "__main__":
    console(evaluate_main)
