"""``torch.compile`` end to end: the caption training step and caption generation of this library,
eager against compiled, fp32 and bf16, with the compilation time apart from the steady state.

    python benchmarks/compile.py --size quick
    python benchmarks/compile.py --size quick --only train --precisions bf16

Each variant runs in its own process (``speed_ours.py``; ``--compile`` compiles the model as
``run.compile`` does for training, and the ViT and text decoder for generation) with an empty
inductor cache, so the first call pays the whole compilation. Printed per benchmark: the first
call, the steady state (minimum of ``--repeats`` later calls), and the number of calls after which
the compiled variant has caught up with eager end to end (``-``: never, its steady state is not
faster).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import speed  # noqa: E402
import speed_harness as H  # noqa: E402

BENCHES = ("train", "generate_greedy", "generate_beam3")


def break_even(eager: dict[str, float], compiled: dict[str, float]) -> float | None:
    """Calls after which ``compiled`` (first call + steady state) has spent no more time than ``eager``."""
    gain = eager["steady_s"] - compiled["steady_s"]
    if gain <= 0:
        return None
    return 1 + max(0.0, compiled["first_s"] - eager["first_s"]) / gain


def measure(bench: str, precision: str, compiled: bool, common: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # a cold compilation, as on a fresh machine
        r = speed.run_worker(sys.executable, "speed_ours.py",
                             ["--bench", bench, "--precision", precision, *common] + (["--compile"] if compiled else []),
                             ours=True)
    return {"first_s": r["first_s"], "steady_s": min(r["times"]), "peak_rss_gb": r["peak_rss_gb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="quick", choices=sorted(H.SIZES))
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {', '.join(BENCHES)}")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls after the first one, per process")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    benches = [b for b in args.only.split(",") if b]
    precisions = [p for p in args.precisions.split(",") if p]
    bad = [b for b in benches if b not in BENCHES] + [p for p in precisions if p not in ("fp32", "bf16")]
    if bad:
        sys.exit(f"not a benchmark of {', '.join(BENCHES)} or a precision fp32 / bf16: {bad}")
    common = ["--size", args.size, "--repeats", str(args.repeats), "--threads", str(args.threads),
              "--vocab", speed.vocab_dir(speed.lavis_python(None))]
    results: dict[str, dict[str, Any]] = {}
    for bench in benches:
        for precision in precisions:
            got = {name: measure(bench, precision, name == "compiled", common) for name in ("eager", "compiled")}
            results[f"{bench} {precision}"] = got
            print(f"  {bench} {precision}: " + ", ".join(
                f"{k} first {v['first_s']:.3g} s, steady {v['steady_s']:.3g} s" for k, v in got.items()), flush=True)

    size = H.SIZES[args.size]
    print(f"\nsize {args.size}, {args.threads} torch thread(s); steady = min of {args.repeats} calls after the first")
    print(speed.fmt_row("benchmark (s per call)", ["eager first", "eager steady", "comp. first", "comp. steady",
                                                   "steady ratio", "break-even"]))
    for key, got in results.items():
        bench, precision = key.split()
        label = speed.row_label(bench, size)
        e, c = got["eager"], got["compiled"]
        even = break_even(e, c)
        print(speed.fmt_row(f"{label}, {precision}"[:62], [
            f"{e['first_s']:.3g}", f"{e['steady_s']:.3g}", f"{c['first_s']:.3g}", f"{c['steady_s']:.3g}",
            f"{e['steady_s'] / c['steady_s']:.2f}x", f"{even:.0f} calls" if even else "-"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"size": args.size, "threads": args.threads, "results": results}, indent=1))


if __name__ == "__main__":
    main()
