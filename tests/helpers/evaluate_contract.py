"""Run ``lavis.cli.evaluate_main`` with the contract test models registered (for torchrun tests).

    python tests/helpers/evaluate_contract.py --cfg-path x.yaml [--options k=v ...]

With ``LAVIS_TOY_RESULT`` set, rank 0 writes the returned metrics there as JSON.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.helpers.contract_models import register_toy_models


def main(argv: list[str]) -> None:
    register_toy_models()
    from lavis.cli import evaluate_main

    result = evaluate_main(argv)
    out = os.environ.get("LAVIS_TOY_RESULT")
    if out and os.environ.get("RANK", "0") == "0":
        Path(out).write_text(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
