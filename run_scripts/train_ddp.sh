#!/usr/bin/env bash
# Data-parallel training on one machine: bash run_scripts/train_ddp.sh NPROC CONFIG [--options ...]
# (gloo on CPU, nccl on GPUs; the runner picks the backend).
set -euo pipefail
cd "$(dirname "$0")/.."
NPROC=${1:?usage: train_ddp.sh NPROC CONFIG [--options k=v ...]}
CFG=${2:?usage: train_ddp.sh NPROC CONFIG [--options k=v ...]}
shift 2
exec torchrun --standalone --nproc_per_node "$NPROC" train.py --cfg-path "$CFG" "$@"
