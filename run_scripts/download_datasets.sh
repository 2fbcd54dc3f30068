#!/usr/bin/env bash
# Download data sets into the lavis cache, laid out where the dataset builders look for them.
#
#   bash run_scripts/download_datasets.sh coco                    # COCO 2014 images + Karpathy splits
#   bash run_scripts/download_datasets.sh coco vqav2 okvqa        # several; shared files are fetched once
#   bash run_scripts/download_datasets.sh gqa --only annotations  # only one kind of part
#   bash run_scripts/download_datasets.sh --list                  # every data set and what is present
#
# Options (passed on to python -m lavis.datasets.download): --root DIR, --only KIND, --keep-archives,
# --no-progress, --list. Environment: LAVIS_CACHE_HOME (data root), LAVIS_MIRROR, LAVIS_OFFLINE.
# Safe to run again: finished steps are skipped, interrupted downloads resume.
# Exit status: 0 complete, 3 a manual step is needed (the message says what to do), 1 failed, 2 usage.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -eq 0 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exec "${PYTHON:-python3}" -m lavis.datasets.download --list
fi
exec "${PYTHON:-python3}" -m lavis.datasets.download "$@"
