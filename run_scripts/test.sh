#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash run_scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest tests -q "$@"
