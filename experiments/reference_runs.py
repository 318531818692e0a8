"""Reference runs for a change that must not change behaviour: the same numbers before and after.

    python experiments/reference_runs.py run OUT            # the reference jobs, results in OUT
    python experiments/reference_runs.py replay OUT         # replayed regret curves, in OUT/replay.json
    python experiments/reference_runs.py compare BEFORE AFTER

``run`` runs seed-0 jobs through the public API only (``allocator.optimize``, ``study``,
``recommend``, ``confirm``), so a checkout from before a refactor runs it too (put that
checkout first on PYTHONPATH). Every search runs one trial at a time
(``search.max_concurrent_trials: 1``): with two at a time TPE's proposals depend on which
trial finishes first. Two sets:

- ``smoke``: the smoke config (experiments/smoke.yaml) with TPE, the growth sampler, ASHA,
  per-ability bounds with a floor and two objectives, then a 3-ability study, its
  recommendation and a confirmation. Its exact-match scores are all 0 at these sizes, so
  it checks the mixtures, the MLflow layout and the plumbing more than the numbers;
- ``data``: a user-data pool whose abilities are scored by held-out loss (their scores move
  with the mixture) with TPE, growth, ASHA, a token budget and two objectives.

For each job it writes the result JSON and a view of its MLflow store (run names, statuses,
tags, params, metric histories, artifact names) without what differs from run to run (run
ids, timings, paths), and prints each job's wall time. ``replay`` replays the regret curves
stored in experiments/results/ (experiments/bench_regret.py) and keeps every trial's value.
``compare`` says, per file, whether two folders hold the same, and where not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DROP = {"seconds", "mlflow_run_id", "trial_id", "mlflow", "parent_run_id", "path", "build_seconds", "experiment_id"}
ONE = {"max_concurrent_trials": 1}


def clean(x: Any) -> Any:
    """A result without what differs between two identical runs (ids, timings, paths)."""
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items() if k not in DROP}
    if isinstance(x, list):
        return [clean(v) for v in x]
    return x


def store(uri: str) -> list[dict[str, Any]]:
    """Every run in an MLflow store: name, status, tags, params, metric histories, artifacts."""
    from mlflow import MlflowClient

    c = MlflowClient(uri)
    rows = []
    skip_tags = ("mlflow.parentRunId", "mlflow.runName", "allocator.trial_id", "mlflow.user")
    for e in c.search_experiments():
        for r in c.search_runs([e.experiment_id]):
            tags = {k: v for k, v in r.data.tags.items() if k not in skip_tags and not k.startswith("mlflow.source")}
            hist = {
                k: [(m.step, m.value) for m in c.get_metric_history(r.info.run_id, k)] for k in sorted(r.data.metrics)
            }
            name = r.data.tags.get("mlflow.runName", "")
            if name.split("-")[0] in ("optimize", "study", "confirm"):
                name = name.split("-")[0]  # a job's parent is named by its start time
            params = {
                k: v for k, v in r.data.params.items() if k not in ("tracking.uri", "storage_path", "data.sources")
            }
            arts = sorted(a.path for a in c.list_artifacts(r.info.run_id))
            rows.append(
                {
                    "name": name,
                    "status": r.info.status,
                    "tags": tags,
                    "params": params,
                    "metrics": hist,
                    "artifacts": arts,
                }
            )
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def _save(out: Path, name: str, result: Any, uri: str | None, seconds: float | None) -> None:
    d = result.to_dict() if hasattr(result, "to_dict") else result
    d = {k: v for k, v in d.items() if k != "kind"}  # results from before files carried a kind
    text = json.dumps(clean(d), indent=1, sort_keys=True).replace(str(out), "OUT")
    (out / f"{name}.json").write_text(text + "\n")
    if uri is not None:
        (out / f"{name}.store.json").write_text(
            json.dumps(store(uri), indent=1, sort_keys=True).replace(str(out), "OUT")
        )
    if seconds is not None:
        print(f"{name}: {seconds:.1f} s", flush=True)


def _data(out: Path) -> dict[str, Any]:
    """The user-data config: three abilities of 60 rows each, two scored by held-out loss."""
    rng = random.Random(0)
    rows = []
    for _ in range(60):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        rows.append({"q": f"add {a}+{b}", "a": str(a + b), "kind": "arith"})
        w = "".join(rng.choice("abcdef") for _ in range(rng.randint(3, 6)))
        rows.append({"q": f"repeat {w}", "a": w, "kind": "copying"})
        rows.append({"q": f"tell a story about {w}", "a": f"once {w} met {w[::-1]} and they sang", "kind": "tale"})
    (out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = {"path": str(out / "train.jsonl"), "format": "fields", "columns": {"prompt": "q", "response": "a"}}
    return {
        "budget": 90,
        "data": {
            "sources": [{**source, "ability_field": "kind"}],
            "heldout_size": 6,
            "metrics": {"tale": "loss", "copying": "loss"},
        },
        "model": {"tokenizer": "bpe", "vocab_size": 300, "max_length": 48},
        "pretrain": {"steps": 30, "corpus": "data"},
        "proxy": {"epochs": 4, "max_new_tokens": 6},
    }


def run(out: Path, sets: list[str]) -> None:
    import allocator

    smoke = str(HERE / "smoke.yaml")
    jobs: dict[str, tuple[Any, dict[str, Any]]] = {}
    if "smoke" in sets:
        jobs.update(
            tpe=(smoke, dict(trials=5, search={"sampler": "tpe", **ONE})),
            growth=(smoke, dict(trials=5, search={"sampler": "growth", "n_startup_trials": 2, **ONE})),
            asha=(
                smoke,
                dict(trials=5, proxy={"reports": 3}, search={"sampler": "random", "scheduler": "asha", **ONE}),
            ),
            bounds_mo=(
                smoke,
                dict(
                    trials=3,
                    search={
                        "sampler": "tpe",
                        "multi_objective": True,
                        "min_budget_fraction": 0.5,
                        "minimum": {"add": 30},
                        "maximum": {"first": 5},
                        "floor": 0.0,
                        **ONE,
                    },
                ),
            ),
        )
    if "data" in sets:
        data = _data(out)
        proxy3 = {"epochs": 4, "max_new_tokens": 6, "reports": 3}
        mo = {"sampler": "tpe", "n_startup_trials": 2, "multi_objective": True, "min_budget_fraction": 0.3}
        jobs.update(
            d_tpe=(data, dict(trials=5, search={"sampler": "tpe", "n_startup_trials": 2, **ONE})),
            d_growth=(data, dict(trials=6, search={"sampler": "growth", "n_startup_trials": 2, **ONE})),
            d_asha=(data, dict(trials=5, proxy=proxy3, search={"sampler": "random", "scheduler": "asha", **ONE})),
            d_tokens=(
                data,
                dict(
                    trials=3, budget=1500, budget_unit="tokens", search={"sampler": "tpe", "n_startup_trials": 1, **ONE}
                ),
            ),
            d_mo=(data, dict(trials=5, search={**mo, **ONE})),
        )
    for name, (config, kw) in jobs.items():
        uri = f"sqlite:///{out / (name + '.db')}"
        t0 = time.perf_counter()
        r = allocator.optimize(
            config, tracking={"uri": uri}, storage_path=str(out / "runs"), printer=lambda s: None, **kw
        )
        _save(out, name, r, uri, time.perf_counter() - t0)
    if "smoke" in sets:
        uri = f"sqlite:///{out / 'study.db'}"
        kw = dict(
            suite={"abilities": ["first", "copy", "upper"], "pool_size": 100, "heldout_size": 6},
            budget=60,
            study={"volumes": [0, 8, 32], "seeds": 1, "bootstrap": 20},
            tracking={"uri": uri},
            storage_path=str(out / "runs"),
            search=ONE,
        )
        t0 = time.perf_counter()
        s = allocator.study(smoke, printer=lambda s: None, **kw)
        _save(out, "study", s, None, time.perf_counter() - t0)
        rec = allocator.recommend(s, budget=60)
        _save(out, "recommend", rec, None, None)
        mixtures = {"uniform": rec.alternatives["uniform"]["counts"], "tailored": rec.counts}
        t0 = time.perf_counter()
        c = allocator.confirm(smoke, mixtures, seeds=2, printer=lambda s: None, **kw)
        _save(out, "confirm", c, uri, time.perf_counter() - t0)


def replay(out: Path) -> None:
    sys.path.insert(0, str(HERE))
    import bench_regret

    table = json.loads((HERE / "results" / "landscape_suite.json").read_text())
    sur = bench_regret.Surrogate(table)
    oracle, _ = bench_regret.surrogate_oracle(sur, table)
    checks = [
        ("regret_suite_explore.json", "growth", 3, [0, 1, 2, 13]),
        ("regret_suite_growth.json", "growth", 0, [0, 1]),
        ("regret_suite.json", "tpe", 3, [0, 1]),
        ("regret_suite.json", "random", 3, [0]),
        ("regret_suite.json", "gp", 3, [0]),
        ("regret_suite.json", "cmaes", 3, [0]),
    ]
    dump: dict[str, Any] = {"oracle": oracle}
    for fname, name, explore_every, seeds in checks:
        stored = json.loads((HERE / "results" / fname).read_text())
        for s in seeds:
            values = bench_regret.replay(table, name, s, 32, 4, sur, explore_every)
            dump[f"{fname}:{name}:{s}"] = values
            r = bench_regret.regrets(values, oracle)
            diff = max(abs(x - y) for x, y in zip(r, stored["regrets"][name][s], strict=True))
            print(f"{fname} {name} seed {s}: largest |regret - recorded| {diff:.1e} points", flush=True)
    (out / "replay.json").write_text(json.dumps(dump) + "\n")


def differences(x: Any, y: Any, path: str = "") -> list[str]:
    """Where two JSON values differ (empty when they are equal)."""
    if isinstance(x, dict) and isinstance(y, dict):
        out = [f"{path}/{k}: only in one" for k in sorted(set(x) ^ set(y))]
        for k in sorted(set(x) & set(y)):
            out += differences(x[k], y[k], f"{path}/{k}")
        return out
    if isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            return [f"{path}: {len(x)} items vs {len(y)}"]
        return [d for i, (p, q) in enumerate(zip(x, y, strict=True)) for d in differences(p, q, f"{path}[{i}]")]
    return [] if x == y else [f"{path}: {x!r:.80} vs {y!r:.80}"]


def compare(before: Path, after: Path) -> int:
    same = True
    for f in sorted(before.glob("*.json")):
        g = after / f.name
        if not g.exists():
            print(f"{f.name}: missing in {after}")
            same = False
            continue
        diffs = differences(json.loads(f.read_text()), json.loads(g.read_text()))
        print(f"{f.name}: {'identical' if not diffs else f'{len(diffs)} differences'}")
        for d in diffs[:20]:
            print(f"  {d}")
        same &= not diffs
    print("ALL IDENTICAL" if same else "DIFFERENT")
    return 0 if same else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("out")
    r.add_argument("--sets", default="smoke,data", help="smoke, data or both (default)")
    sub.add_parser("replay").add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    args = p.parse_args()
    quiet = {"RAY_AIR_NEW_OUTPUT": "0", "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    for k, v in {"HF_HUB_OFFLINE": "1", **quiet}.items():
        os.environ.setdefault(k, v)
    if args.command == "compare":
        return compare(Path(args.before), Path(args.after))
    out = Path(args.out).resolve()
    if args.command == "run":
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        os.chdir(out)
        run(out, args.sets.split(","))
    else:
        out.mkdir(parents=True, exist_ok=True)
        replay(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
