"""Regret benchmark: replay searches against a measured landscape (experiments/landscape.py).

    python experiments/bench_regret.py --landscape experiments/results/landscape_suite.json \\
        [--samplers random,tpe,gp,cmaes,growth] [--seeds 20] [--trials 32] [--lookup surrogate|nearest] \\
        [--explore-every 3]

Every trial of a replayed search is a lookup, not a proxy run: the sampler's point is
mapped to its mixture (allocator.mixture, the search's own parametrization), and the
mixture's per-ability scores are read from the landscape in one of two ways:

- ``surrogate`` (default): a neutral surrogate fitted to the measured runs, one
  Gaussian process per ability over the mixture's proportions (scikit-learn; Matern
  5/2 with a length scale per ability, plus a white-noise term fitted to the spread
  between seeds), read at its posterior mean, so a trial costs nothing and has no
  noise. It is not the growth-curve model (no saturating curve, no per-ability
  separability), so the project's sampler is not graded on its own assumptions; it
  is smooth, like Optuna's GP sampler's model, so that sampler is the one it favors.
  The oracle is the surrogate's maximum, found by evaluating 100,000 random mixtures
  and the measured ones, then hill-climbing from the best 20 by moving budget between
  pairs of abilities.
- ``nearest``: the scores of the nearest measured mixture (L1 distance of the counts).
  Every value is a measurement, but with ~100 mixtures in 7 dimensions the table is
  coarse: a sampler that converges on a point between entries is graded on whatever
  entry is nearest. The oracle is the best measured mixture.

The objective is the weighted mean of the scores (the landscape's weights), as in
``allocator optimize``. The uniform mixture is the first trial and every sampler gets
``--startup`` startup trials (the uniform one included). The regret after k trials is
``100 * (oracle - best of the first k) / oracle``, trials counted with the uniform
one; each search is deterministic given its seed. Prints a Markdown table for
docs/BENCHMARKS.md: the mean (and median) regret after 4, 8, 16 and 32 trials over the
seeds, and the number of trials each needs to come within 1% (the median over seeds;
a seed that never gets there counts as more than --trials).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINTS = (4, 8, 16, 32)


def make_sampler(
    name: str, seed: int, plan: Any, weights: Mapping[str, float], startup: int, explore_every: int = 3
) -> Any:
    from allocator.config import SearchConfig
    from allocator.search.samplers import make_sampler as allocator_sampler

    search = SearchConfig(sampler=name, n_startup_trials=startup, kappa=1.0, explore_every=explore_every)
    return allocator_sampler(search, seed, plan, weights)


class Surrogate:
    """Per-ability Gaussian processes over the proportions (module doc)."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        self.abilities: list[str] = table["abilities"]
        self.budget = float(table["budget"])
        x, ys = [], {a: [] for a in self.abilities}
        for e in table["mixtures"]:
            for k in range(len(e["objective_per_seed"])):  # every seed is an observation
                x.append([e["mixture"][a] / self.budget for a in self.abilities])
                for a in self.abilities:
                    ys[a].append(e["scores_per_seed"][a][k])
        x_arr = np.asarray(x)
        self.models = {}
        # a length scale at its upper bound is an ability that does not matter (ARD): expected
        warnings.filterwarnings("ignore", message=".*close to the specified upper bound.*")
        for i, a in enumerate(self.abilities):
            kernel = ConstantKernel(0.1, (1e-4, 10.0)) * Matern(
                length_scale=np.full(len(self.abilities), 0.3), length_scale_bounds=(0.02, 20.0), nu=2.5
            ) + WhiteKernel(0.01, (1e-6, 1.0))
            gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=i)
            self.models[a] = gp.fit(x_arr, np.asarray(ys[a]))

    def scores(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Predicted mean scores of mixtures (rows of counts, abilities in order)."""
        x = np.atleast_2d(counts) / self.budget
        return {a: self.models[a].predict(x) for a in self.abilities}


def _objective(scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    total = sum(weights.values())
    return sum(weights[a] * np.asarray(v) for a, v in scores.items()) / total


def surrogate_oracle(sur: Surrogate, table: Mapping[str, Any], seed: int = 0) -> tuple[float, dict[str, int]]:
    """The surrogate's maximum over mixtures of the budget under the caps (module doc)."""
    from allocator.mixture import counts_from_weights

    ab, budget, caps, w = sur.abilities, int(table["budget"]), table["caps"], table["weights"]
    rng = np.random.default_rng(seed)
    cand = [[e["mixture"][a] for a in ab] for e in table["mixtures"]]
    for alpha in (1.0, 0.3):
        for p in rng.dirichlet([alpha] * len(ab), 50_000):
            mix = counts_from_weights(dict(zip(ab, p.tolist(), strict=True)), budget, caps)
            cand.append([mix[a] for a in ab])
    c = np.asarray(cand, dtype=float)
    values = _objective(sur.scores(c), w)
    starts = c[np.argsort(-values)[:20]]
    best_v, best_x = -np.inf, starts[0]
    for x in starts:
        v = float(_objective(sur.scores(x), w)[0])
        step = budget / 8
        while step >= 1:
            moves = []
            for i in range(len(ab)):
                for j in range(len(ab)):
                    d = min(step, x[i], caps[ab[j]] - x[j])
                    if i != j and d >= 1:
                        y = x.copy()
                        y[i] -= d
                        y[j] += d
                        moves.append(y)
            if not moves:
                break
            m = np.asarray(moves)
            mv = _objective(sur.scores(m), w)
            k = int(np.argmax(mv))
            if mv[k] > v + 1e-9:
                x, v = m[k], float(mv[k])
            else:
                step = step // 2
        if v > best_v:
            best_v, best_x = v, x
    return best_v, {a: int(n) for a, n in zip(ab, best_x, strict=True)}


def replay(
    table: Mapping[str, Any],
    sampler_name: str,
    seed: int,
    trials: int,
    startup: int = 4,
    surrogate: Surrogate | None = None,
    explore_every: int = 3,
) -> list[float]:
    """The objective of each trial of one replayed search, in order: read from
    ``surrogate`` when given, else from the nearest measured mixture."""
    import optuna

    from allocator.mixture import BudgetPlan, counts_from_point, uniform_point
    from allocator.search.sampler import ALLOCATION_ATTR, SCORES_ATTR

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    abilities: list[str] = table["abilities"]
    plan = BudgetPlan("examples", int(table["budget"]), {a: int(n) for a, n in table["caps"].items()})
    entries = table["mixtures"]
    counts = np.array([[e["mixture"][a] for a in abilities] for e in entries], dtype=float)
    sampler = make_sampler(sampler_name, seed, plan, table["weights"], startup, explore_every)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial({f"u_{a}": u for a, u in uniform_point(abilities).items()})

    def objective(trial: optuna.Trial) -> float:
        point = {a: trial.suggest_float(f"u_{a}", 0.0, 1.0) for a in abilities}
        mix = counts_from_point(point, plan.budget, plan.caps)
        x = np.array([mix[a] for a in abilities], dtype=float)
        if surrogate is not None:
            scores = {a: float(v[0]) for a, v in surrogate.scores(x).items()}
        else:
            # the neighbour's scores, paired with the proposed mixture: every sampler sees the same
            # lookup noise (the growth sampler reading the neighbour's own counts would see less)
            scores = entries[int(np.argmin(np.abs(counts - x).sum(axis=1)))]["scores"]
        trial.set_user_attr(SCORES_ATTR, scores)
        trial.set_user_attr(ALLOCATION_ATTR, mix)
        return float(_objective(scores, table["weights"]))

    study.optimize(objective, n_trials=trials)
    return [float(t.value) for t in study.trials]


def regrets(values: Sequence[float], oracle: float) -> list[float]:
    """Regret (% of the oracle) after each trial."""
    best = np.maximum.accumulate(np.asarray(values, dtype=float))
    return [float(100.0 * (oracle - b) / oracle) for b in best]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--landscape", required=True)
    p.add_argument("--samplers", default="random,tpe,gp,cmaes,growth")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--trials", type=int, default=32)
    p.add_argument("--startup", type=int, default=4)
    p.add_argument("--lookup", choices=["surrogate", "nearest"], default="surrogate")
    p.add_argument("--explore-every", type=int, default=3, help="growth: search.explore_every (0: never)")
    p.add_argument("--json", help="also write every search's per-trial regrets here")
    args = p.parse_args()

    table = json.loads(Path(args.landscape).read_text())
    objs = [e["objective"] for e in table["mixtures"]]
    uniform = next(e for e in table["mixtures"] if e["name"] == "uniform")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(f"- landscape: `{args.landscape}` ({len(objs)} mixtures x {table['seeds']} seeds, budget {table['budget']})")
    print(f"  made by `{table['command']}`")
    best = table["mixtures"][int(np.argmax(objs))]
    print(f"- best measured: {best['name']} {best['objective']:.4f} {best['mixture']}")
    print(f"- uniform measured: {uniform['objective']:.4f}")
    surrogate = None
    if args.lookup == "surrogate":
        t0 = time.perf_counter()
        surrogate = Surrogate(table)
        oracle, at = surrogate_oracle(surrogate, table)
        u = np.array([[uniform["mixture"][a] for a in table["abilities"]]], dtype=float)
        u_obj = float(_objective(surrogate.scores(u), table["weights"])[0])
        fit = {a: str(m.kernel_) for a, m in surrogate.models.items()}
        print(f"- lookup: GP surrogate per ability (fitted, oracle found in {time.perf_counter() - t0:.0f} s)")
        print(f"- oracle (surrogate maximum): {oracle:.4f} at {at}; uniform {u_obj:.4f}")
        print(f"  (uniform regret {100 * (oracle - u_obj) / oracle:.1f}%)")
        for a, k in fit.items():
            print(f"  - {a}: {k}")
    else:
        oracle = max(objs)
        within = sum(o >= 0.99 * oracle for o in objs)
        print(f"- lookup: nearest measured mixture; oracle {oracle:.4f}; {within} of {len(objs)} within 1%")
    print()
    head = " | ".join(f"regret@{k} mean (median)" for k in CHECKPOINTS if k <= args.trials)
    print(f"| sampler | {head} | trials to <= 1% (median) | seeds reaching 1% | s per search |")
    print("| --- |" + " ---: |" * (len([k for k in CHECKPOINTS if k <= args.trials]) + 3))
    dump: dict[str, list[list[float]]] = {}
    for name in args.samplers.split(","):
        runs, secs = [], []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            values = replay(table, name, seed, args.trials, args.startup, surrogate, args.explore_every)
            runs.append(regrets(values, oracle))
            secs.append(time.perf_counter() - t0)
        dump[name] = runs
        cells = []
        for k in CHECKPOINTS:
            if k <= args.trials:
                at = [r[k - 1] for r in runs]
                cells.append(f"{statistics.fmean(at):.2f} ({statistics.median(at):.2f})")
        needed = [next((i + 1 for i, x in enumerate(r) if x <= 1.0), args.trials + 1) for r in runs]
        med = statistics.median(needed)
        med_s = f"> {args.trials}" if med > args.trials else f"{med:g}"
        reached = sum(n <= args.trials for n in needed)
        print(f"| {name} | {' | '.join(cells)} | {med_s} | {reached}/{args.seeds} | {statistics.fmean(secs):.1f} |")
    lowest = min(min(r) for runs in dump.values() for r in runs)
    print()
    print(f"- lowest regret of any trial: {lowest:.2f}% (below 0: a trial beat the oracle, which is then no maximum)")
    if args.json:
        Path(args.json).write_text(json.dumps({"oracle": oracle, "regrets": dump}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
