"""Measure a mixture landscape once: many mixtures under one budget, each a real proxy run
with several seeds, saved as a results file that experiments/bench_regret.py replays.

    python experiments/landscape.py --config experiments/landscape.yaml \\
        --mixtures 128 --seeds 2 --output experiments/results/landscape_suite.json [--keep DIR]

The mixtures (fixed by ``--seed``): the uniform one, then half drawn from the flat
Dirichlet (what random search draws: allocator.mixture), half from a Dirichlet(0.3),
which puts most of the budget on a few abilities, so the table also covers the
simplex's corners and edges. All are split under the pools' caps. They are trained
by ``allocator.confirm`` (a Ray Tune grid, one MLflow child run each) with training
seeds ``config.seed + k``, k < seeds: seed 0 is the one a search with that config
uses. The file holds, per mixture, its counts, the mean objective and mean
per-ability normalized scores over the seeds, and the per-seed values; with the
command, the resolved config, the pool summary and the wall time.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def mixtures(abilities: list[str], caps: dict[str, int], budget: int, n: int, seed: int) -> dict[str, dict[str, int]]:
    """``n`` distinct mixtures of ``budget`` examples (module doc)."""
    from allocator.mixture import counts_from_weights, uniform_counts

    rng = np.random.default_rng(seed)
    out = {"uniform": uniform_counts(abilities, budget, caps)}
    k = 0
    while len(out) < n:
        alpha = 1.0 if k % 2 == 0 else 0.3
        w = rng.dirichlet([alpha] * len(abilities))
        mix = counts_from_weights(dict(zip(abilities, w.tolist(), strict=True)), budget, caps)
        k += 1
        if mix not in out.values():
            out[f"m{len(out):03d}-a{alpha:g}"] = mix
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--mixtures", type=int, default=128)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="draws the mixtures")
    p.add_argument("--output", required=True)
    p.add_argument("--keep", help="run folder (MLflow store, Ray results); default: a temporary one")
    args = p.parse_args()

    import allocator
    from allocator.config import load_config
    from allocator.data.pools import prepare_pools
    from allocator.report.results import write_json

    output = Path(args.output).resolve()
    cfg = load_config(args.config)
    pools, _, _ = prepare_pools(cfg)
    caps = {a: int(c) for a, c in pools.plan("examples", cfg.budget).caps.items()}
    mixes = mixtures(pools.abilities, caps, cfg.budget, args.mixtures, args.seed)

    work = Path(args.keep or tempfile.mkdtemp(prefix="landscape-"))
    work.mkdir(parents=True, exist_ok=True)
    config = str(Path(args.config).resolve())
    os.chdir(work)  # the MLflow store and Ray results go to the run folder
    t0 = time.perf_counter()
    res = allocator.confirm(config, mixes, seeds=args.seeds, seed_offset=0)
    seconds = time.perf_counter() - t0
    table = []
    for name, mix in mixes.items():
        s = res.summary[name]
        table.append(
            {
                "name": name,
                "mixture": mix,
                "objective": s["objective"]["mean"],
                "objective_per_seed": s["objective"]["values"],
                "scores": {a: v["mean"] for a, v in s["scores"].items()},
                "scores_per_seed": {a: v["values"] for a, v in s["scores"].items()},
            }
        )
    write_json(
        output,
        {
            "command": "python " + " ".join(shlex.quote(x) for x in sys.argv),
            "budget": cfg.budget,
            "abilities": pools.abilities,
            "caps": caps,
            "weights": cfg.objective_weights(pools.abilities),
            "seeds": args.seeds,
            "seconds": round(seconds, 1),
            "nproc": os.cpu_count(),
            "config": res.config,
            "pool": pools.summary,
            "mixtures": table,
        },
    )
    best = max(table, key=lambda r: r["objective"])
    uni = next(r for r in table if r["name"] == "uniform")
    print(f"{len(table)} mixtures x {args.seeds} seeds in {seconds:.0f} s; wrote {output}")
    print(f"best {best['name']} {best['objective']:.4f}, uniform {uni['objective']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
