"""Sizing the target's recipe (issue 15): does one full fine-tune of the target learn the suite?

The confirmation benchmark is only a ranking test if the target learns something in its
steps; with 3 epochs (188 steps) it did not (docs/BENCHMARKS.md). This trains the target of a
config (default ``experiments/confirm_suite.yaml``) once per (epochs, lr) of a grid on a few
mixtures of the benchmark's result file, in one process (no Ray: the loop and its numbers are
those of a 1-worker target run, trainers.proxy.run_proxy, 2 torch threads), and prints the
objective (normalized per ability against the target's own base, as a confirmation scores it)
and the exact match per ability, with the training seconds.

    .venv/bin/python experiments/tune_target_recipe.py --epochs 3 8 15 --lr 2e-3 5e-3 \
        [--mixtures uniform top1 worst] [--seed 0] [--proxy] [--kind full|lora] \
        [--set target.pretrain.lr=1e-3 --set target.model.num_heads=8]

``--set KEY=VALUE`` overrides one config field by its dotted path (the value read as YAML), so
a candidate target (a pretraining or a shape) is measured without a config file of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "confirm_suite.yaml"))
    ap.add_argument(
        "--result",
        default=str(ROOT / "results" / "confirm_suite.json"),
        help="a confirmation's or an optimization's result JSON (its mixtures)",
    )
    ap.add_argument("--epochs", type=float, nargs="+", default=[3.0, 8.0, 15.0])
    ap.add_argument("--lr", type=float, nargs="+", default=[2e-3, 5e-3])
    ap.add_argument("--mixtures", nargs="+", default=["uniform", "top1", "worst"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--proxy", action="store_true", help="train the config's proxy instead of its target")
    ap.add_argument("--kind", choices=["full", "lora"], help="override the recipe's kind")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    args = ap.parse_args()

    from allocator.config import load_config
    from allocator.data.pools import prepare_pools
    from allocator.trial.worker import trial_metrics
    from trainers import build_or_load_base
    from trainers.proxy import evaluate_base, run_proxy

    cfg = load_config(args.config, _overrides(args.set))
    cfg = cfg if args.proxy else cfg.for_target()
    pools, tok, _ = prepare_pools(cfg)
    spec = cfg.model.spec()
    built = build_or_load_base(spec, cfg.pretrain.recipe(), tok=tok, threads=args.threads)
    base = built.ref(spec)
    mixtures = _mixtures(json.loads(Path(args.result).read_text()))
    weights = cfg.objective_weights(pools.abilities)
    common = {
        "model": base,
        "tokenizer": tok.spec(),
        "heldout": pools.heldout,
        "metrics": pools.metrics,
        "max_new": pools.max_new,
    }
    recipe0 = replace(cfg.proxy.recipe(), threads=args.threads, reports=1)
    if args.kind:
        recipe0 = replace(recipe0, kind=args.kind)
    base_scores = evaluate_base(**common, recipe=recipe0)
    print(f"target: {built.meta['params']:,} parameters, kind {recipe0.kind}, batch {recipe0.batch_size}", flush=True)
    rows = []
    for epochs in args.epochs:
        for lr in args.lr:
            recipe = replace(recipe0, epochs=epochs, lr=lr)
            for name in args.mixtures:
                t0 = time.perf_counter()
                res = run_proxy(**common, train=pools.train, mixture=mixtures[name], recipe=recipe, seed=args.seed)
                m = trial_metrics(res.scores, pools.metrics, base_scores, weights)
                em = {a: round(s.get("exact_match", s.get("choice", float("nan"))), 3) for a, s in res.scores.items()}
                row = {
                    "epochs": epochs,
                    "lr": lr,
                    "mixture": name,
                    "steps": res.steps,
                    "objective": round(m["objective"], 4),
                    "exact_match": em,
                    "train_seconds": round(res.train_seconds, 1),
                    "wall_seconds": round(time.perf_counter() - t0, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)


def _mixtures(result: dict) -> dict:
    """A confirmation's named mixtures, or an optimization's: uniform (its baseline), top1 (the
    best finished searched trial) and worst."""
    if "mixtures" in result:
        return result["mixtures"]
    searched = sorted(
        (t for t in result["trials"] if t["kind"] == "search" and t["objective"] is not None),
        key=lambda t: -t["objective"],
    )
    uniform = next(t for t in result["trials"] if t["kind"] == "baseline")
    return {"uniform": uniform["mixture"], "top1": searched[0]["mixture"], "worst": searched[-1]["mixture"]}


def _overrides(pairs: list[str]) -> dict:
    """``a.b.c=v`` pairs as the nested mapping load_config merges (values read as YAML)."""
    import yaml

    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE, e.g. target.pretrain.lr=1e-3")
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return out


if __name__ == "__main__":
    main()
