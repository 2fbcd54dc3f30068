"""How long ``import lavis`` takes, next to references measured in the same run.

    python benchmarks/import_time.py [--repeat 5]

Prints the best of N fresh interpreters for: a bare interpreter, ``import lavis``, listing
registry names (which must import nothing heavy), looking up one model (which imports its family,
so torch and transformers), ``import torch`` and ``import transformers``, and the ratio of each to
``import lavis``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

CASES = {
    "python -c pass": "pass",
    "import lavis": "import lavis",
    "import lavis; registry.list_models()": "import lavis; lavis.registry.list_models()",
    "import lavis; list every kind": "import lavis; [r.names() for r in lavis.registry.kinds.values()]",
    "import lavis; get_model_class(blip_caption)": "import lavis; lavis.registry.get_model_class('blip_caption')",
    "import torch": "import torch",
    "import transformers": "import transformers",
}


def best_time(code: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times = {name: best_time(code, args.repeat) for name, code in CASES.items()}
    ref = times["import lavis"]
    print(f"{'case':<40} {'seconds':>8} {'x import lavis':>15}")
    for name, t in times.items():
        print(f"{name:<40} {t:8.3f} {t / ref:15.2f}")


if __name__ == "__main__":
    main()
