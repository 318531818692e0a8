"""``allocator optimize``: search per-ability example counts under a budget (a job on the runner).

Ray Tune + Optuna over the mixture space: one coordinate ``u_<ability>`` in [0, 1] per
ability, mapped to example counts by the budget plan (allocator.mixture: flat-Dirichlet
weights, water-filled under pool caps, summing to the budget in examples or tokens). The
uniform mixture runs as the first point (``points_to_evaluate``): it is the baseline the
search must beat, and the sampler learns from it like from any trial. A warm start's
mixtures run right after it. One trial is one proxy fine-tune (allocator.trial.worker),
which a scheduler may stop at the proxy's intermediate evaluations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from allocator.config import OptimizeConfig, resolve_config
from allocator.data.labels import ability_key, param_name
from allocator.data.pools import Pools
from allocator.errors import UserError
from allocator.mixture import BudgetPlan, point_from_counts, uniform_point
from allocator.report.results import OptimizeResult
from allocator.trial.prepare import Prepared
from allocator.trial.record import Status, TrialRecord
from allocator.trial.resume import Resumed, point_key
from allocator.trial.runner import Job, JobRun, TrialPlan, run_job
from allocator.trial.setup import mixture_of, point_of

__all__ = ["OptimizeJob", "SearchOpener", "optimize"]

BASELINE = "uniform-baseline"


class OptimizeJob(Job):
    kind = "optimize"

    def __init__(self, cfg: OptimizeConfig, out: Callable[[str], None]) -> None:
        self.cfg, self.out = cfg, out
        self.plan: BudgetPlan | None = None
        self.warm: Any = None

    def check(self, pools: Pools) -> None:
        """The budget and its bounds against the pool (before the base is built)."""
        cfg = self.cfg
        plan = pools.plan(cfg.budget_unit, cfg.budget).bounded(cfg.search.minimum, cfg.search.maximum)
        smallest = round(cfg.search.min_budget_fraction * cfg.budget)
        if cfg.search.multi_objective and sum(plan.minimum.values()) > smallest:
            raise UserError(
                f"search.minimum: the minimums add up to {sum(plan.minimum.values()):,}, more than the smallest "
                f"mixture of the multi-objective search ({smallest:,}: min_budget_fraction x budget)"
            )
        self.plan = plan

    def trials(self, prep: Prepared) -> TrialPlan:
        cfg, search, plan = self.cfg, self.cfg.search, self.plan
        assert plan is not None
        abilities = prep.pools.abilities
        if search.warm_start:  # a user error here too comes before anything is written
            from allocator.report.results import load_result
            from allocator.search.warmstart import warm_start

            source = search.warm_start
            found = load_result(source, cfg.tracking.uri, ("study.json", "recommendation.json"), "search.warm_start")
            self.warm = warm_start(
                found,
                source,
                budget=cfg.budget,
                unit=cfg.budget_unit,
                abilities=abilities,
                caps=plan.caps,
                weights=prep.weights,
                base_scores=prep.base_scores,
                minimum=plan.minimum or None,
            )
            what = ", ".join(f"{k}: {v}" for k, v in self.warm.summary().items() if k not in ("source", "enqueued"))
            self.out(f"warm start from {source} ({what})")
        return self._search(prep, plan)

    def _search(self, prep: Prepared, plan: BudgetPlan) -> TrialPlan:
        import optuna
        from ray import tune

        from allocator.search.extensions import BaselineKeepingASHA, ScoredOptunaSearch
        from allocator.search.sampler import ALLOCATION_ATTR, SCORES_ATTR
        from allocator.search.samplers import make_sampler

        cfg, search, warm, resumed = self.cfg, self.cfg.search, self.warm, self.resumed
        abilities = prep.pools.abilities
        sampler = make_sampler(search, cfg.seed, plan, prep.weights, warm)
        if resumed is not None and resumed.state is not None:  # its random state goes on
            sampler = resumed.state
            getattr(sampler, "proposals", {}).clear()  # keyed by the old study's trial numbers
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        first = {BASELINE: uniform_point(abilities)}
        for label, counts in (warm.enqueue if warm is not None else {}).items():
            first[f"warm-{label}"] = point_from_counts(counts, plan.minimum)
        space: dict[str, Any] = {param_name(a): tune.uniform(0.0, 1.0) for a in abilities}
        starts = {k: {param_name(a): u for a, u in p.items()} for k, p in first.items()}
        if search.multi_objective:  # (objective, examples): a mixture may use less than the budget
            space["budget_fraction"] = tune.uniform(search.min_budget_fraction, 1.0)
            starts = {k: {**p, "budget_fraction": 1.0} for k, p in starts.items()}
        rerun: list[dict[str, Any]] = []
        if resumed is not None:  # what ran is not run again; what was running restarts first
            kept = {k for k, p in starts.items() if point_key(p) in resumed.points}
            first = {k: p for k, p in first.items() if k not in kept}
            starts = {k: p for k, p in starts.items() if k not in kept}
            rerun = [json.loads(key) for key in resumed.running]
        warm_trials = []
        for t in warm.trials if warm is not None else ():
            point = {param_name(a): u for a, u in point_from_counts(t["mixture"], plan.minimum).items()}
            examples = sum(t["mixture"].values())
            if search.multi_objective:
                point["budget_fraction"] = min(1.0, examples / plan.budget)
            attrs = {SCORES_ATTR: t["scores"], ALLOCATION_ATTR: t["mixture"], "allocator.warm_start": True}
            warm_trials.append({"point": point, "objective": t["objective"], "examples": examples, "user_attrs": attrs})
        searcher = ScoredOptunaSearch(
            abilities,
            cfg.proxy.reports,
            scores_attr=SCORES_ATTR,
            warm_trials=warm_trials,
            resumed_trials=resumed.optuna if resumed is not None else (),
            metric=["objective", "examples"] if search.multi_objective else "objective",
            mode=["max", "min"] if search.multi_objective else "max",
            sampler=sampler,
            points_to_evaluate=[*rerun, *starts.values()],
        )
        scheduler = None
        if search.scheduler == "asha":
            uniform = first[BASELINE]
            scheduler = BaselineKeepingASHA(
                lambda trial: point_of(trial.config, abilities) == uniform,
                metric="objective",
                mode="max",
                time_attr="training_iteration",  # one per proxy evaluation
                max_t=cfg.proxy.reports,
                grace_period=search.grace_period,
                reduction_factor=search.reduction_factor,
            )
        self.searcher = searcher  # finish() reads its Optuna study's states
        opener = SearchOpener(abilities, plan, search.sampler, first, searcher, resumed)
        unit = cfg.budget_unit
        kept = len(resumed.ended) if resumed is not None else 0
        return TrialPlan(
            setup=prep.trial_setup(plan=plan),
            param_space=space,
            num_samples=cfg.trials + 1 - kept,
            trials=cfg.trials + 1,
            opener=opener,
            line=lambda rec, ended: _line(rec, cfg.trials),
            announce=lambda conc: (
                f"searching {cfg.trials} mixtures of {cfg.budget} {unit} + the uniform baseline, {conc} at a time"
            ),
            search_alg=searcher,
            scheduler=scheduler,
            trial_state=searcher.trial_state,
            state=lambda: searcher.sampler,
        )

    def finish(self, run: JobRun) -> OptimizeResult:
        from allocator.report.tables import best_vs_uniform
        from allocator.search.selection import choose_best, compute_stats, mark_floor, pareto

        cfg, prep, tracker, out = self.cfg, run.prep, run.tracker, self.out
        records = sorted(run.records, key=lambda r: (r.kind != "baseline", r.name))
        baseline = next((r for r in records if r.kind == "baseline"), None)
        done = [r for r in records if r.kind == "search" and r.status is Status.FINISHED]
        if baseline is None or baseline.status is not Status.FINISHED:
            raise RuntimeError("the uniform baseline trial did not finish (see the Ray trial logs)")
        if not done:
            raise RuntimeError("no searched trial finished (see the Ray trial logs)")
        if cfg.search.floor is not None:
            mark_floor(records, baseline, cfg.search.floor, out)
            for r in records:
                if r.violations and r.mlflow_run_id:
                    tracker.set_tag(r.mlflow_run_id, "allocator.floor_violations", ",".join(r.violations))
        best = choose_best(records, baseline)
        if best is baseline:
            out(f"no searched mixture meets the floor ({cfg.search.floor}): the uniform mixture is the recommendation")
        stats = compute_stats(records)
        stats["optuna_states"] = self.searcher.states()  # FAIL for every failed trial, never COMPLETE
        front = pareto(records, best, out) if cfg.search.multi_objective else None
        if stats["early_stopped"]:
            out(
                f"early stopping ({cfg.search.scheduler}): {stats['early_stopped']} trials stopped, "
                f"{stats['steps_trained']:,} of {stats['steps_without_early_stopping']:,} optimizer steps trained "
                f"({100 * stats['compute_saved']:.0f}% saved)"
            )
        base = prep.base
        result = OptimizeResult(
            best=_summary(best),
            baselines={"uniform": _summary(baseline)},
            base_scores=prep.base_scores,
            pool=prep.pools.summary,
            trials=[r.to_dict() for r in records],
            mlflow=run.mlflow(),
            base_model={
                "path": str(base.path),
                **{
                    k: base.meta[k] for k in ("digest", "params", "build_seconds", "source", "commit") if k in base.meta
                },
            },
            config=run.prep.cfg.to_dict(),  # a pretrained model pinned (its folder, its commit)
            seconds=run.seconds(),
            warm_start=self.warm.summary() if self.warm is not None else None,
            search_stats=stats,
            pareto=front,
        )
        tracker.log_metrics(
            run.parent,
            {
                "best_objective": best.objective or 0.0,
                "uniform_objective": baseline.objective or 0.0,
                "failed_trials": sum(r.status is Status.FAILED for r in records),
                "early_stopped_trials": stats["early_stopped"],
                "compute_saved": stats["compute_saved"],
                **{f"best_score/{ability_key(a)}": s for a, s in best.scores.items()},
            },
            step=0,
        )
        tracker.log_json(run.parent, result.to_dict(), "recommendation.json")
        delta = (best.objective or 0.0) - (baseline.objective or 0.0)
        verdict = "beats" if delta > 0 else "does not beat"
        out(f"best mixture: {best.name} {verdict} the uniform baseline by {delta:+.4f} (found by {best.origin})")
        for line in best_vs_uniform(best, baseline, prep.pools.metrics) + run.closing_lines(result.seconds):
            out(line)
        return result


class SearchOpener:
    """A search's Tune trial -> its record: the baseline and the warm start's mixtures (the
    points enqueued first, each recognized once), or a sampler's proposal, with the growth
    model's prediction when it made one; and its own MLflow params (its point, its origin).
    A resumed job's trial that restarts keeps its name and origin."""

    def __init__(
        self,
        abilities: list[str],
        plan: BudgetPlan,
        sampler: str,
        first: dict[str, dict[str, float]],
        searcher: Any,
        resumed: Resumed | None = None,
    ) -> None:
        self.abilities, self.plan, self.sampler = abilities, plan, sampler
        self.first = dict(first)
        self.searcher = searcher
        self.running = dict(resumed.running) if resumed is not None else {}
        self.searched = sum(r.kind == "search" for r in resumed.records) if resumed is not None else 0

    def proposal(self, trial_id: str) -> Any:
        """What the growth-curve sampler proposed for a trial (None for other samplers)."""
        ot_trial = self.searcher.optuna_trial(trial_id)
        proposals = getattr(self.searcher.sampler, "proposals", None)
        return proposals.get(ot_trial.number) if ot_trial is not None and proposals is not None else None

    def __call__(self, trial: Any) -> tuple[TrialRecord, dict[str, Any]]:
        point = point_of(trial.config, self.abilities)
        mixture = mixture_of(trial.config, self.plan)
        old = self.running.pop(point_key(trial.config), None)
        if old is not None:  # it restarts: the same trial (allocator.trial.callback reopens its run)
            rec = TrialRecord(trial.trial_id, old.name, old.kind, mixture, origin=old.origin)
            return rec, {}
        # the enqueued points (baseline, warm start) come back as they went in, each once
        label = next((k for k, p in self.first.items() if p == point), None)
        if label is not None:
            del self.first[label]
        proposal = self.proposal(trial.trial_id)
        if label == BASELINE:
            kind, name, origin = "baseline", label, "baseline: the uniform mixture"
        else:
            self.searched += 1
            kind, name = "search", f"trial-{self.searched:03d}"
            if label is not None:
                origin = f"warm start: {label.removeprefix('warm-')}"
            elif proposal:
                origin = f"{self.sampler} model: predicted {proposal.predicted:.4f} +- {proposal.sd:.4f}"
                if proposal.explore:
                    origin += f" (explores {', '.join(proposal.explore)} past the largest volumes tried)"
            else:
                origin = f"{self.sampler} sampler"
        rec = TrialRecord(trial.trial_id, name, kind, mixture, origin=origin)
        rec.predicted = proposal.predicted if proposal else None
        params: dict[str, Any] = {f"u.{ability_key(a)}": round(u, 6) for a, u in point.items()}
        params["origin"] = origin
        return rec, params


def _line(rec: TrialRecord, total: int) -> str:
    label = "baseline " if rec.kind == "baseline" else f"{rec.name[6:]}/{total:03d}"
    mix = " ".join(f"{a}={n}" for a, n in rec.mixture.items())
    obj = f"{rec.objective:.4f}" if rec.objective is not None else "  -   "
    shown = "STOPPED" if rec.status is Status.EARLY_STOPPED else str(rec.status)  # early, at step rec.steps
    return f"  {label}  objective {obj}  {rec.seconds:6.1f}s  {shown:8s}  {mix}"


def _summary(rec: TrialRecord) -> dict[str, Any]:
    keys = (
        "name",
        "trial_id",
        "mixture",
        "scores",
        "exact_match",
        "choice",
        "losses",
        "data_hash",
        "objective",
        "origin",
    )
    return {**{k: getattr(rec, k) for k in keys}, "predicted": rec.predicted, "mlflow_run_id": rec.mlflow_run_id}


def optimize(
    config: OptimizeConfig | dict | str | Path | None = None,
    *,
    printer: Callable[[str], None] | None = None,
    resume: str | None = None,
    command: str | None = None,
    **overrides: Any,
) -> OptimizeResult:
    """Search per-ability example counts under ``config.budget`` (module and README docs).

    ``config`` is an ``OptimizeConfig``, a dict of config keys, a YAML path, or
    ``None`` for the embedded default; keyword overrides replace top-level keys
    (``optimize(trials=4, budget=2000)``). ``resume`` takes up an interrupted search of the
    same config: its parent run id, or ``"latest"`` (allocator.trial.resume); ``command`` is
    the command line printed to resume this one. Raises ``UserError`` for bad input.
    """
    out = printer or (lambda s: print(s, flush=True))
    cfg = resolve_config(config, overrides)
    return run_job(cfg, OptimizeJob(cfg, out), out, resume=resume, command=command)
