"""Benchmark: the embedded default `allocator optimize`, end to end, from a cold cache.

    python experiments/bench_default.py [--keep DIR] [-- extra optimize flags]

Runs the real CLI in a fresh folder with an empty model cache (so the first
base build is included, as on a fresh machine), times it, and prints a
Markdown summary for docs/BENCHMARKS.md: wall time, base build time, the best
mixture's and the uniform baseline's objective and per-ability scores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--keep", help="run in this folder (kept) instead of a temporary one")
    p.add_argument("--warm-cache", action="store_true", help="reuse the user's model cache")
    p.add_argument("extra", nargs="*", help="flags passed to allocator optimize (after --)")
    args = p.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-default-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not args.warm_cache:
        env["ALLOCATOR_CACHE_DIR"] = str(work / "cache")
    cmd = [sys.executable, "-m", "allocator", "optimize", "--output", "out.json", *args.extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t0
    (work / "run.log").write_text(proc.stdout)
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        print(f"allocator optimize exited {proc.returncode}", file=sys.stderr)
        return 1
    out = json.loads((work / "out.json").read_text())
    best, uni = out["best"], out["baselines"]["uniform"]
    finished = sum(t["status"] == "FINISHED" for t in out["trials"])
    print(f"- command: `{' '.join(['allocator', 'optimize', *args.extra])}` (cold cache: {not args.warm_cache})")
    print(f"- wall time: {wall:.0f} s (base build {out['base_model']['build_seconds']} s), nproc={os.cpu_count()}")
    print(f"- trials finished: {finished} of {len(out['trials'])} (uniform baseline included)")
    print(f"- best ({best['name']}) objective {best['objective']:.4f} vs uniform {uni['objective']:.4f}")
    print()
    print("| ability | best count | uniform count | best exact match | uniform exact match |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for a in best["mixture"]:
        print(
            f"| {a} | {best['mixture'][a]} | {uni['mixture'][a]} | {best['scores'][a]:.3f} | {uni['scores'][a]:.3f} |"
        )
    print(f"\nrun folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
