"""Samplers on real proxy runs: each searches with the same number of trials, then the
mixture each search recommends is trained afresh, so the comparison is not the searches'
own (selected, hence optimistic) scores.

    python experiments/bench_samplers.py --config experiments/landscape.yaml \\
        [--samplers growth,tpe,random] [--seeds 0,1,2] [--trials 15] [--fresh-seeds 2] [--keep DIR]

For every sampler and search seed: ``allocator optimize --config C --sampler S --seed s
--trials T`` (T searched mixtures plus the uniform baseline: T + 1 proxy runs; the
search seed also sets the trials' training seed). Then ``allocator.confirm`` trains
every search's best mixture with ``--fresh-seeds`` training seeds no search used
(config seed + 1000 + k). All runs share one MLflow store and one base model in the
run folder. Prints Markdown for docs/BENCHMARKS.md: per search, the best measured
objective, the trial that found it and how, and its fresh objective; per sampler, the
mean over search seeds; and, paired by search seed, the first sampler's fresh objective
minus each other's.
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--samplers", default="growth,tpe,random")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--trials", type=int, default=15, help="searched mixtures (the uniform baseline is one more)")
    p.add_argument("--fresh-seeds", type=int, default=2)
    p.add_argument("--keep", help="run folder (kept); default: a temporary one")
    args = p.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-samplers-"))
    work.mkdir(parents=True, exist_ok=True)
    config = str(Path(args.config).resolve())
    env = {**os.environ, "ALLOCATOR_CACHE_DIR": str(work / "cache")}
    samplers = args.samplers.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[tuple[str, int], dict] = {}
    seconds: dict[tuple[str, int], float] = {}
    for seed in seeds:
        for sampler in samplers:
            name = f"{sampler}-s{seed}"
            out = work / f"{name}.json"
            if not out.exists():  # a rerun with --keep resumes where it stopped
                cmd = [sys.executable, "-m", "allocator", "optimize", "--config", config, "--sampler", sampler]
                cmd += ["--seed", str(seed), "--trials", str(args.trials), "--output", str(out)]
                t0 = time.perf_counter()
                with open(work / f"{name}.log", "w") as log:
                    proc = subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
                if proc.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd[2:])} exited {proc.returncode}: see {work / (name + '.log')}")
                seconds[(sampler, seed)] = time.perf_counter() - t0
            results[(sampler, seed)] = json.loads(out.read_text())

    import allocator

    os.environ["ALLOCATOR_CACHE_DIR"] = env["ALLOCATOR_CACHE_DIR"]
    os.chdir(work)
    mixtures = {f"{s}-s{seed}": results[(s, seed)]["best"]["mixture"] for seed in seeds for s in samplers}
    fresh = allocator.confirm(config, mixtures, seeds=args.fresh_seeds, seed_offset=1000, printer=lambda _: None)
    fresh_obj = {k: v["objective"]["mean"] for k, v in fresh.summary.items()}

    print(f"- command: `python {' '.join(sys.argv)}` (nproc={os.cpu_count()}, run folder {work})")
    print(f"- {args.trials} searched mixtures + the uniform baseline per search; best mixtures retrained with")
    print(f"  {args.fresh_seeds} fresh training seeds ({fresh.seconds:.0f} s)")
    print()
    print("| sampler | search seed | best measured | found at | how | fresh objective | uniform measured | s |")
    print("| --- | ---: | ---: | --- | --- | ---: | ---: | ---: |")
    for seed in seeds:
        for s in samplers:
            r = results[(s, seed)]
            b = r["best"]
            sec = seconds.get((s, seed))
            print(
                f"| {s} | {seed} | {b['objective']:.4f} | {b['name']} | {b.get('origin') or '-'} | "
                f"{fresh_obj[f'{s}-s{seed}']:.4f} | {r['baselines']['uniform']['objective']:.4f} | "
                f"{'-' if sec is None else f'{sec:.0f}'} |"
            )
    print()
    print("| sampler | mean best measured | mean fresh objective | fresh, paired vs " + samplers[0] + " |")
    print("| --- | ---: | ---: | ---: |")
    for s in samplers:
        measured = [results[(s, seed)]["best"]["objective"] for seed in seeds]
        fr = [fresh_obj[f"{s}-s{seed}"] for seed in seeds]
        diffs = [fresh_obj[f"{samplers[0]}-s{seed}"] - fresh_obj[f"{s}-s{seed}"] for seed in seeds]
        each = ", ".join(f"{d:+.3f}" for d in diffs)
        paired = "-" if s == samplers[0] else f"{statistics.fmean(diffs):+.4f} ({each})"
        print(f"| {s} | {statistics.fmean(measured):.4f} | {statistics.fmean(fr):.4f} | {paired} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
