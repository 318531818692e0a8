"""Benchmark: one `allocator optimize` run end to end, from a cold model cache.

    python experiments/bench_optimize.py [--config PATH] [--keep DIR] [--warm-cache] [-- extra optimize flags]

Without --config it runs the embedded default. It runs the real CLI in a fresh
folder with an empty model cache (so the base build is included, as on a fresh
machine), times it, and prints a Markdown summary for docs/BENCHMARKS.md: wall
time, base build time, trial times, the best mixture's and the uniform
baseline's objective, and per ability the counts, the metric, the raw score
(exact match or held-out loss) of the untrained base, the uniform baseline and
the best mixture, and the normalized scores the objective averages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _raw(rec: dict, ability: str, metric: str) -> float:
    return rec["exact_match"][ability] if metric == "exact_match" else rec["losses"][ability]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", help="YAML config (default: the embedded default)")
    p.add_argument("--keep", help="run in this folder (kept) instead of a temporary one")
    p.add_argument("--warm-cache", action="store_true", help="reuse the user's model cache")
    p.add_argument("extra", nargs="*", help="flags passed to allocator optimize (after --)")
    args = p.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-optimize-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not args.warm_cache:
        env["ALLOCATOR_CACHE_DIR"] = str(work / "cache")
    flags = [*(["--config", str(Path(args.config).resolve())] if args.config else []), *args.extra]
    cmd = [sys.executable, "-m", "allocator", "optimize", "--output", "out.json", *flags]
    t0 = time.perf_counter()
    # the log is written as it comes, so a long run can be followed with tail -f
    with open(work / "run.log", "w") as log:
        proc = subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print((work / "run.log").read_text()[-4000:])
        print(f"allocator optimize exited {proc.returncode}", file=sys.stderr)
        return 1
    out = json.loads((work / "out.json").read_text())
    best, uni, base = out["best"], out["baselines"]["uniform"], out["base_scores"]
    metrics = {a: s["metric"] for a, s in out["pool"]["abilities"].items()}
    trials = out["trials"]
    finished = [t for t in trials if t["status"] == "FINISHED"]
    shown = " ".join(["allocator", "optimize", *([f"--config {args.config}"] if args.config else []), *args.extra])
    print(f"- command: `{shown}` (cold cache: {not args.warm_cache})")
    print(f"- wall time: {wall:.0f} s (base build {out['base_model']['build_seconds']} s), nproc={os.cpu_count()}")
    secs = [t["seconds"] for t in finished if t.get("seconds")]
    if secs:
        print(f"- trial time: median {statistics.median(secs):.0f} s (min {min(secs):.0f}, max {max(secs):.0f})")
    print(f"- trials finished: {len(finished)} of {len(trials)} (uniform baseline included)")
    print(f"- best ({best['name']}) objective {best['objective']:.4f} vs uniform {uni['objective']:.4f}")
    objs = sorted(t["objective"] for t in finished if t["kind"] == "search")
    print(f"- searched objectives: {', '.join(f'{o:.4f}' for o in objs)}")
    print()
    print(
        "| ability | metric | best count | uniform count | base raw | uniform raw | best raw"
        " | uniform score | best score |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for a, m in metrics.items():
        print(
            f"| {a} | {m} | {best['mixture'][a]} | {uni['mixture'][a]} | {base[a][m]:.3f} | {_raw(uni, a, m):.3f}"
            f" | {_raw(best, a, m):.3f} | {uni['scores'][a]:.3f} | {best['scores'][a]:.3f} |"
        )
    print(f"\nrun folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
