"""Target trainer scaling (issue 15): training examples per second of the target fine-tune at a
fixed global batch, on 1 and on 2 Ray Train workers (gloo, 1 torch thread each), on this machine.

The loop is the one every target run uses (trainers.proxy.run_proxy, data-parallel under
torch.distributed; ``full`` fine-tune of the default built-in target, 256 wide, 1.3M
parameters), on the built-in suite's examples. Speed is rank 0's examples in its training
steps over their time (``ProxyResult.train_seconds``: evaluation, model loading and Ray
Train's start are not counted; they are reported apart, as the wall time of the whole run).

    .venv/bin/python experiments/bench_target_scaling.py [--steps 60] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _loop(config: dict) -> None:
    import torch.distributed as dist

    from trainers.proxy import run_proxy

    result = run_proxy(**config["proxy"])
    if dist.get_rank() == 0:
        with open(config["out"], "w") as f:
            json.dump({"steps": result.steps, "train_seconds": result.train_seconds}, f)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import ray
    from ray import tune

    from allocator.config import load_config
    from allocator.data.pools import prepare_pools
    from ray_cluster import LAUNCHER_CPUS, connect, fit_data_parallel
    from trainers import build_or_load_base
    from trainers.config import ProxyRecipe

    cfg = load_config(None, {"target": {}}).for_target()
    pools, tok, _ = prepare_pools(cfg)
    spec = cfg.model.spec()
    built = build_or_load_base(spec, cfg.pretrain.recipe(), tok=tok, threads=2)
    base = built.ref(spec)
    n = args.steps * args.batch  # one epoch of exactly `steps` batches
    per = n // len(pools.abilities) + 1
    mixture = {a: min(per, len(pools.train[a])) for a in pools.abilities}
    recipe = ProxyRecipe(kind="full", epochs=1.0, batch_size=args.batch, lr=1e-3, reports=1, threads=1)
    heldout = {a: items[:4] for a, items in pools.heldout.items()}  # a token evaluation: not timed
    proxy = {
        "model": base,
        "tokenizer": tok.spec(),
        "train": pools.train,
        "heldout": heldout,
        "metrics": pools.metrics,
        "max_new": pools.max_new,
        "mixture": mixture,
        "recipe": recipe,
        "seed": 0,
    }
    connect(None, 2)
    out_dir = Path("/tmp/bench_target_scaling")
    out_dir.mkdir(exist_ok=True)
    rows = []
    for rep in range(args.repeats):
        for workers in (1, 2):
            out = out_dir / f"w{workers}-r{rep}.json"

            def trial(params: dict, workers: int = workers, out: Path = out) -> None:
                fit_data_parallel(
                    _loop,
                    {"proxy": proxy, "out": str(out)},
                    workers=workers,
                    cpus_per_worker=0.95,
                    storage_path=str(out_dir / "train"),
                    name=f"scale-{workers}",
                )

            t0 = time.perf_counter()
            tuner = tune.Tuner(
                tune.with_resources(trial, {"cpu": LAUNCHER_CPUS}),
                run_config=tune.RunConfig(storage_path=str(out_dir / "tune"), verbose=0),
            )
            (res,) = tuner.fit()
            assert res.error is None, res.error
            wall = time.perf_counter() - t0
            r = json.loads(out.read_text())
            examples = r["steps"] * args.batch
            rows.append(
                {
                    "workers": workers,
                    "repeat": rep,
                    "examples": examples,
                    "train_seconds": r["train_seconds"],
                    "examples_per_s": examples / r["train_seconds"],
                    "wall_seconds": wall,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()
    best = {w: max(r["examples_per_s"] for r in rows if r["workers"] == w) for w in (1, 2)}
    print(f"params {built.meta['params']:,}, global batch {args.batch}, {args.steps} steps")
    print(f"examples/s: 1 worker {best[1]:.1f}, 2 workers {best[2]:.1f}: speed-up {best[2] / best[1]:.2f}x")
    print(json.dumps({"rows": rows, "best": best, "speedup": best[2] / best[1]}))


if __name__ == "__main__":
    main()
