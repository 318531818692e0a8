"""``allocator optimize``: the whole job, thin orchestration over the parts.

Order matters for "nothing half-written": the config, the data (read, split
and tokenized: every data error surfaces here), the budget against the pool and
the tracking URI are validated first; then the base is built or loaded and
evaluated once (a cache, not a result; its scores anchor the normalized scores
of allocator.scoring); then Ray is started or joined and the trial resources
checked against it; only then is anything written to MLflow or to the output.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allocator.config import OptimizeConfig, load_config, merge

__all__ = [
    "OptimizeResult",
    "Prepared",
    "bounded_plan",
    "concurrency",
    "open_parent",
    "optimize",
    "prepare",
    "prepare_pools",
]


@dataclass
class OptimizeResult:
    """What an optimization found; ``to_dict()`` is the ``--output`` JSON."""

    best: dict[str, Any]
    baselines: dict[str, Any]
    base_scores: dict[str, dict[str, float]]
    pool: dict[str, Any]
    trials: list[dict[str, Any]]
    mlflow: dict[str, Any]
    base_model: dict[str, Any]
    config: dict[str, Any]
    seconds: float
    warm_start: dict[str, Any] | None = None
    search_stats: dict[str, Any] | None = None  # early stopping: trials stopped, steps trained and saved
    pareto: dict[str, Any] | None = None  # multi-objective: the (objective, examples) front

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _as_config(config: OptimizeConfig | dict | str | Path | None, overrides: dict[str, Any]) -> OptimizeConfig:
    if isinstance(config, OptimizeConfig):
        return load_config(None, merge(config.to_dict(), overrides)) if overrides else config
    if isinstance(config, dict):
        return load_config(None, merge(config, overrides))
    return load_config(config, overrides)


def _summary(rec: Any) -> dict[str, Any]:
    return {
        "name": rec.name,
        "trial_id": rec.trial_id,
        "mixture": rec.mixture,
        "scores": rec.scores,
        "exact_match": rec.exact_match,
        "losses": rec.losses,
        "data_hash": rec.data_hash,
        "objective": rec.objective,
        "origin": rec.origin,
        "predicted": rec.predicted,
        "mlflow_run_id": rec.mlflow_run_id,
    }


def _table(best: Any, base: Any, metrics: dict[str, str]) -> list[str]:
    w = max(10, *(len(a) for a in metrics))
    lines = [f"  {'ability':{w}s} {'metric':11s} {'count':>7s} {'uniform':>8s} {'score':>7s} {'uniform':>8s}"]
    for a, m in metrics.items():
        lines.append(
            f"  {a:{w}s} {m:11s} {best.mixture[a]:7d} {base.mixture[a]:8d} {best.scores[a]:7.3f} {base.scores[a]:8.3f}"
        )
    lines.append(f"  {'objective':{w}s} {'':11s} {'':7s} {'':8s} {best.objective:7.4f} {base.objective:8.4f}")
    return lines


def prepare_pools(cfg: OptimizeConfig, log: Callable[[str], None] | None = None) -> tuple[Any, Any, Any]:
    """Read, split and tokenize the pool (allocator.pools): ``(pools, tokenizer, corpus)``,
    where ``corpus`` is ``(pretraining documents or None, digest)`` for the base."""
    from allocator.pools import corpus, encode_pools, load_records
    from trainers.base_model import build_or_load_tokenizer
    from trainers.corpus import generic_documents

    raw = load_records(cfg)
    texts, docs, digest = corpus(cfg, raw)
    if texts is None:  # generic prose: the tokenizer (if trained) reads a sample of it
        pre = cfg.pretrain

        def texts_fn() -> list[str]:
            return generic_documents(2_000_000, seed=pre.seed, echo=pre.echo)
    else:

        def texts_fn() -> list[str]:
            return texts

    if cfg.model.tokenizer == "bpe" and log is not None:
        log(f"tokenizer: byte-level BPE, {cfg.model.vocab_size} tokens, trained on the {digest} corpus (cached)")
    tok = build_or_load_tokenizer(cfg.model.model_dump(), texts_fn, digest)
    pools = encode_pools(
        raw,
        tok,
        max_length=cfg.model.max_length,
        truncation=cfg.model.truncation,
        max_new_tokens=cfg.proxy.max_new_tokens,
        max_repeats=cfg.data.max_repeats if cfg.data is not None else 1,
    )
    return pools, tok, (docs, digest)


@dataclass
class Prepared:
    """Everything a job needs before Ray and MLflow: validated, built, evaluated."""

    pools: Any
    tok: Any
    base: Any
    base_scores: dict[str, dict[str, float]]
    weights: dict[str, float]
    uri: str
    checked: Any = None  # what ``before_base`` returned (optimize: the bounded budget plan)


def prepare(
    cfg: OptimizeConfig, out: Callable[[str], None], before_base: Callable[[Any], Any] | None = None
) -> Prepared:
    """Read, split and tokenize the pool, check the weights, ``before_base(pools)``
    (more checks of user input, e.g. the budget) and the tracking URI, then build or
    load the base and score it once: every user error surfaces before anything is
    written (the model cache is a cache, not a result)."""
    from allocator.tracking import check_uri, default_tracking_uri
    from trainers.base_model import build_or_load_base

    pools, tok, (docs, corpus_digest) = prepare_pools(cfg, out)
    weights = cfg.objective_weights(pools.abilities)
    checked = before_base(pools) if before_base is not None else None
    for a, info in pools.summary["abilities"].items():
        lost = f", {info['truncated_away']} truncated away" if info["truncated_away"] else ""
        out(f"  pool {a}: {info['train']} train, {info['heldout']} held-out ({info['metric']}){lost}")
    uri = cfg.tracking.uri or default_tracking_uri()
    check_uri(uri)
    base = build_or_load_base(
        cfg.model.model_dump(),
        cfg.pretrain.model_dump(),
        tok=tok,
        docs=(lambda: docs) if docs is not None else None,
        corpus_digest=corpus_digest,
        threads=os.cpu_count(),
        log=out,
    )
    out(f"base model: {base.meta['params']:,} parameters, {base.path} (built in {base.meta['build_seconds']}s)")
    base_scores = evaluate_base(base, tok, pools, cfg)
    out("untrained base: " + ", ".join(f"{a} {_raw(s, pools.metrics[a])}" for a, s in base_scores.items()))
    return Prepared(pools, tok, base, base_scores, weights, uri, checked)


def concurrency(cfg: OptimizeConfig) -> int:
    """Trials at a time on the Ray that ``connect`` reached (ray_cluster.resources)."""
    import ray

    from ray_cluster import max_concurrent_trials

    r = cfg.resources
    return max_concurrent_trials(
        ray.cluster_resources(), r.cpus_per_trial, r.gpus_per_trial, cfg.search.max_concurrent_trials
    )


def open_parent(tracker: Any, cfg: OptimizeConfig, prep: Prepared, kind: str) -> tuple[str, str]:
    """Start a job's MLflow parent run (config, pool summary, the base's raw scores);
    returns ``(run id, run name)``."""
    run_name = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    parent = tracker.start_parent(
        run_name, cfg.to_dict(), {"allocator.base_digest": prep.base.meta["digest"]}, kind=kind
    )
    tracker.log_json(parent, prep.pools.summary, "pool.json")
    tracker.log_metrics(parent, _flat_base(prep.base_scores), step=0)
    return parent, run_name


def optimize(
    config: OptimizeConfig | dict | str | Path | None = None,
    *,
    printer: Callable[[str], None] | None = None,
    **overrides: Any,
) -> OptimizeResult:
    """Search per-ability example counts under ``config.budget`` (module and README docs).

    ``config`` is an ``OptimizeConfig``, a dict of config keys, a YAML path, or
    ``None`` for the embedded default; keyword overrides replace top-level keys
    (``optimize(trials=4, budget=2000)``). Raises ``UserError`` for bad input.
    """
    # heavy imports (Ray, torch) here, not at module level: `allocator --help` stays fast
    from allocator.errors import UserError
    from allocator.search import compute_stats, run_search
    from allocator.tracking import ended_status, open_tracker, ui_command
    from ray_cluster import connect, disconnect, trial_resources

    t_start = time.perf_counter()
    out = printer or (lambda s: print(s, flush=True))
    cfg = _as_config(config, overrides)

    def check_plan(p: Any) -> dict[str, Any]:  # user errors in the budget and bounds, before the base is built
        plan = bounded_plan(p.plan(cfg.budget_unit, cfg.budget), cfg.search.minimum, cfg.search.maximum)
        smallest = round(cfg.search.min_budget_fraction * cfg.budget)
        if cfg.search.multi_objective and sum(plan.get("minimum", {}).values()) > smallest:
            raise UserError(
                f"search.minimum: the minimums add up to {sum(plan['minimum'].values()):,}, more than the smallest "
                f"mixture of the multi-objective search ({smallest:,}: min_budget_fraction x budget)"
            )
        return plan

    prep = prepare(cfg, out, before_base=check_plan)
    pools, tok, base, base_scores = prep.pools, prep.tok, prep.base, prep.base_scores
    weights, uri = prep.weights, prep.uri
    abilities = pools.abilities
    plan = prep.checked
    warm = None
    if cfg.search.warm_start:  # a user error here too comes before anything is written
        from allocator.warmstart import load_result, warm_start

        source = cfg.search.warm_start
        found = load_result(source, cfg.tracking.uri, ("study.json", "recommendation.json"), "search.warm_start")
        warm = warm_start(
            found,
            source,
            budget=cfg.budget,
            unit=cfg.budget_unit,
            abilities=abilities,
            caps=plan["caps"],
            weights=weights,
            base_scores=base_scores,
            minimum=plan.get("minimum"),
        )
        what = ", ".join(f"{k}: {v}" for k, v in warm.summary().items() if k not in ("source", "enqueued"))
        out(f"warm start from {source} ({what})")

    started_ray = connect(cfg.ray.address, cfg.ray.num_cpus)
    tracker = None
    try:
        conc = concurrency(cfg)
        tracker = open_tracker(uri, cfg.tracking.experiment)
        parent, run_name = open_parent(tracker, cfg, prep, "optimize")
        unit = cfg.budget_unit
        out(f"searching {cfg.trials} mixtures of {cfg.budget} {unit} + the uniform baseline, {conc} at a time")
        setup = {
            "config": cfg.to_dict(),
            "abilities": abilities,
            "plan": plan,
            "base_weights": base.weights,
            "tokenizer": tok.spec(),
            "train": pools.shipped(plan),
            "heldout": pools.heldout,
            "metrics": pools.metrics,
            "max_new": pools.max_new,
            "max_repeats": pools.max_repeats,
            "base_scores": base_scores,
            "weights": weights,
        }
        records = run_search(
            config=cfg.to_dict(),
            setup=setup,
            data_hash=pools.data_hash,
            tracker=tracker,
            storage_path=str(Path(cfg.storage_path).resolve()),
            run_name=f"{run_name}-{parent[:8]}",
            max_concurrent=conc,
            resources=trial_resources(cfg.resources.cpus_per_trial, cfg.resources.gpus_per_trial),
            printer=out,
            warm=warm,
        )
        baseline = next((r for r in records if r.kind == "baseline"), None)
        done = [r for r in records if r.kind == "search" and r.status == "FINISHED"]
        if baseline is None or baseline.status != "FINISHED":
            raise RuntimeError("the uniform baseline trial did not finish (see the Ray trial logs)")
        if not done:
            raise RuntimeError("no searched trial finished (see the Ray trial logs)")
        if cfg.search.floor is not None:
            _check_floor(records, baseline, cfg.search.floor, out)
            for r in records:
                if r.violations and r.mlflow_run_id:
                    tracker.set_tag(r.mlflow_run_id, "allocator.floor_violations", ",".join(r.violations))
        eligible = [r for r in done if not r.violations]
        if not eligible:
            out(f"no searched mixture meets the floor ({cfg.search.floor}): the uniform mixture is the recommendation")
        best = max(eligible, key=lambda r: r.objective or 0.0) if eligible else baseline
        stats = compute_stats(records)
        pareto = _pareto(records, best, out) if cfg.search.multi_objective else None
        if stats["early_stopped"]:
            out(
                f"early stopping ({cfg.search.scheduler}): {stats['early_stopped']} trials stopped, "
                f"{stats['steps_trained']:,} of {stats['steps_without_early_stopping']:,} optimizer steps trained "
                f"({100 * stats['compute_saved']:.0f}% saved)"
            )
        result = OptimizeResult(
            best=_summary(best),
            baselines={"uniform": _summary(baseline)},
            base_scores=base_scores,
            pool=pools.summary,
            trials=[r.to_dict() for r in records],
            mlflow={"tracking_uri": uri, "experiment_id": tracker.experiment_id, "parent_run_id": parent},
            base_model={"path": str(base.path), **{k: base.meta[k] for k in ("digest", "params", "build_seconds")}},
            config=cfg.to_dict(),
            seconds=round(time.perf_counter() - t_start, 1),
            warm_start=warm.summary() if warm is not None else None,
            search_stats=stats,
            pareto=pareto,
        )
        tracker.log_metrics(
            parent,
            {
                "best_objective": best.objective or 0.0,
                "uniform_objective": baseline.objective or 0.0,
                "failed_trials": sum(r.status == "FAILED" for r in records),
                "early_stopped_trials": stats["early_stopped"],
                "compute_saved": stats["compute_saved"],
                **{f"best_score/{a}": s for a, s in best.scores.items()},
            },
            step=0,
        )
        tracker.log_json(parent, result.to_dict(), "recommendation.json")
        delta = (best.objective or 0.0) - (baseline.objective or 0.0)
        verdict = "beats" if delta > 0 else "does not beat"
        out(f"best mixture: {best.name} {verdict} the uniform baseline by {delta:+.4f} (found by {best.origin})")
        for line in _table(best, baseline, pools.metrics):
            out(line)
        out(f"MLflow: {uri} (experiment {tracker.experiment_id}, parent run {parent})")
        out(f"  view: {ui_command(uri)}")
        out(f"done in {result.seconds:.0f}s")
        tracker.close("FINISHED")
        return result
    except BaseException as e:
        if tracker is not None:
            tracker.close(ended_status(e))
        raise
    finally:
        disconnect(started_ray)


def bounded_plan(
    plan: dict[str, Any], minimum: dict[str, int] | None, maximum: dict[str, int] | None
) -> dict[str, Any]:
    """The budget plan with ``search.minimum`` (kept by every mixture) and ``search.maximum``
    (lowering the pool caps); a bound naming an unknown ability or one the budget cannot
    meet is a ``UserError``."""
    from allocator.errors import UserError

    if not minimum and not maximum:
        return plan
    caps = dict(plan["caps"])
    for name, d in (("minimum", minimum or {}), ("maximum", maximum or {})):
        unknown = [a for a in d if a not in caps]
        if unknown:
            raise UserError(f"search.{name}: {unknown[0]!r} is not an ability of the pool ({', '.join(caps)})")
    for a, hi in (maximum or {}).items():
        caps[a] = min(caps[a], hi)
    lo = {a: int(n) for a, n in (minimum or {}).items()}
    over = [a for a, n in lo.items() if n > caps[a]]
    if over:
        a = over[0]
        raise UserError(f"search.minimum: {a}={lo[a]} exceeds what {a} can give ({caps[a]}: its pool or maximum)")
    budget = plan["budget"]
    if sum(lo.values()) > budget:
        raise UserError(f"search.minimum: the minimums add up to {sum(lo.values()):,}, over the budget {budget:,}")
    if sum(caps.values()) < budget:
        room = sum(caps.values())
        raise UserError(f"search.maximum: the maximums leave room for {room:,}, under the budget {budget:,}")
    return {**plan, "caps": caps, "minimum": lo}


def _pareto(records: list[Any], best: Any, out: Callable[[str], None]) -> dict[str, Any]:
    """The (objective, examples) Pareto front of the finished trials that may be
    recommended, and the cheapest mixture within 1, 2 and 5% of the best objective."""
    from allocator.allocation import pareto_front

    ok = [r for r in records if r.status == "FINISHED" and not r.violations and r.objective is not None]
    idx = pareto_front([(r.objective, sum(r.mixture.values())) for r in ok])
    front = [ok[i] for i in idx]
    top = best.objective or 0.0
    cheapest = {}
    for pct in (1, 2, 5):
        within = [r for r in front if (r.objective or 0.0) >= top - abs(top) * pct / 100]
        cheapest[f"{pct}%"] = within[0].name if within else None
    out("Pareto front (objective vs examples trained):")
    for r in front:
        out(f"  {r.name:16s} {sum(r.mixture.values()):7,d} examples  objective {r.objective:.4f}")
    out("cheapest within " + ", ".join(f"{k} of the best: {v}" for k, v in cheapest.items()))
    return {
        "front": [{"name": r.name, "examples": sum(r.mixture.values()), "objective": r.objective} for r in front],
        "cheapest_within": cheapest,
    }


def _check_floor(records: list[Any], baseline: Any, floor: float, out: Callable[[str], None]) -> None:
    """Mark the searched trials with an ability more than ``floor`` below the uniform
    mixture's score: they are reported, never recommended."""
    for r in records:
        if r.kind == "search" and r.status == "FINISHED":
            r.violations = [a for a, s in r.scores.items() if s < baseline.scores[a] - floor]
    bad = [r for r in records if r.violations]
    if bad:
        out(f"floor ({floor} below the uniform mixture's score): {len(bad)} trials violate it, not recommended:")
        for r in bad:
            below = ", ".join(f"{a} {r.scores[a]:.3f} < {baseline.scores[a] - floor:.3f}" for a in r.violations)
            out(f"  {r.name}: {below}")


def _raw(s: dict[str, float], metric: str) -> str:
    return f"em {s['exact_match']:.3f}" if metric == "exact_match" else f"loss {s['loss']:.3f}"


def _flat_base(base_scores: dict[str, dict[str, float]]) -> dict[str, float]:
    return {f"base_{m}/{a}": v for a, s in base_scores.items() for m, v in s.items()}


def evaluate_base(base: Any, tok: Any, pools: Any, cfg: OptimizeConfig) -> dict[str, dict[str, float]]:
    """The untrained base's raw scores on the held-out sets: the 0 of every normalized score."""
    import torch

    from trainers.base_model import load_model
    from trainers.evaluate import evaluate

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        model = load_model(cfg.model.model_dump(), base.weights, tok)
        return evaluate(
            model, tok, pools.heldout, metrics=pools.metrics, max_new=pools.max_new, max_length=cfg.model.max_length
        )
    finally:
        torch.set_num_threads(threads)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(p)
