"""Train a model from an experiment config: `python train.py --cfg-path configs/demo/caption_shapes.yaml`."""

from lavis.cli import console, train_main

if __name__ == "__main__":
    console(train_main)
