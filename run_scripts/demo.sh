#!/usr/bin/env bash
# Set up (if needed), train the tiny captioner on generated shapes data, then evaluate the best checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash run_scripts/setup.sh
PY=${PYTHON:-python3}
"$PY" train.py --cfg-path configs/demo/caption_shapes.yaml "$@"
"$PY" evaluate.py --cfg-path configs/demo/caption_shapes_eval.yaml
