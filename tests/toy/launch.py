"""Run ``lavis.cli.train_main`` with the toy task registered (for subprocess and torchrun tests).

    python tests/toy/launch.py --cfg-path toy.yaml [--options k=v ...]

Registration happens only in this process. With ``LAVIS_TOY_RESULT`` set, rank 0 writes the
returned metrics there as JSON.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lavis.common.registry import registry  # noqa: E402
from tests.toy.components import ToyTask  # noqa: E402


def main(argv: list[str]) -> None:
    registry.register_task("toy_task")(ToyTask)
    from lavis.cli import train_main

    result = train_main(argv)
    out = os.environ.get("LAVIS_TOY_RESULT")
    if out and os.environ.get("RANK", "0") == "0":
        Path(out).write_text(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
