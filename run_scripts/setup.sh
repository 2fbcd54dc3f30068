#!/usr/bin/env bash
# Install lavis and everything its demo and tests need, on a fresh machine. Safe to run again:
# what is already installed is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# torch + torchvision first, as a matching pair (pip would otherwise pick torch on its own).
if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
  if [ "$(uname -m)" = "aarch64" ]; then
    "$PY" -m pip install -q "torch==2.9.1" "torchvision==0.24.1"
  else
    "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  fi
fi

# pycocoevalcap's PTB tokenizer and METEOR run on Java.
if ! command -v java >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null
  else
    echo "warning: no java found; install a Java runtime for METEOR and the PTB tokenizer" >&2
  fi
fi

"$PY" -m pip install -q -e ".[dev]"
