"""``allocator confirm``: mixtures trained afresh over several seeds, on the proxy and on the
target (a job on the runner).

Every mixture (the caller's named ones, the baselines **uniform** and **proportional**, and the
registry's current ``champion`` when it fits this pool and budget) is trained ``seeds`` times
with training seeds ``config.seed + seed_offset + k`` (not the seeds a study or search used),
the same seeds for every mixture, so that differences pair by seed:

- as **proxy runs**, exactly like a search's trials (the winner's curse: how a search's
  estimate of its best compares with fresh runs of it);
- as **target runs** when the config has a ``target:`` section: a data-parallel fine-tune of
  the target on Ray Train (allocator.trial.target), scored with the same held-out sets and
  scorer, normalized against the target's own untrained base.

The result gives per mixture the objective and per-ability scores (mean, spread, per seed);
each mixture against uniform and proportional (paired t-tests, Holm-corrected over the
comparisons made, confidence intervals); how well the proxy's ranking of the mixtures holds
on the target (Spearman and Kendall, bootstrap intervals: allocator.studies.evidence). Every
mixture becomes a strategy in MLflow and its Model Registry (allocator.report.registry).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from allocator.config import OptimizeConfig, resolve_config
from allocator.data.labels import ability_key
from allocator.data.pools import Pools
from allocator.errors import UserError
from allocator.report.results import ConfirmResult
from allocator.studies.candidates import same_counts
from allocator.studies.specs import GridJob, RunSpec, confirm_specs, pool_caps
from allocator.trial.prepare import Prepared, prepare
from allocator.trial.runner import JobRun, TrialPlan, run_job

__all__ = ["ConfirmJob", "check_seeds", "confirm", "target_digest"]

STRATEGIES_TAG = "allocator.strategies"  # the folder of a confirmation's target weights

BASELINES = ("uniform", "proportional")


def _stats(xs: list[float]) -> dict[str, Any]:
    from allocator.report.tables import paired_stats

    return paired_stats(xs)


def target_digest(cfg: OptimizeConfig) -> str | None:
    """What identifies a confirmation's target (its model and fine-tune): a champion retrained
    on another target is not a like-for-like comparison."""
    if cfg.target is None:
        return None
    return hashlib.sha256(json.dumps(cfg.target.dump(), sort_keys=True).encode()).hexdigest()[:16]


class ConfirmJob(GridJob):
    kind = "confirm"

    def __init__(
        self,
        cfg: OptimizeConfig,
        mixtures: Mapping[str, Mapping[str, int]],
        seeds: int,
        first_seed: int,
        out: Any,
        *,
        estimates: Mapping[str, Mapping[str, Any]] | None = None,
        search_best: str | None = None,
    ) -> None:
        super().__init__(out)
        reserved = [n for n in mixtures if n in (*BASELINES, "champion")]
        if reserved:
            raise UserError(f"mixture name {reserved[0]!r} is reserved (the baselines and the registry's champion)")
        self.cfg, self.given, self.seeds, self.first_seed = cfg, dict(mixtures), seeds, first_seed
        self.estimates = dict(estimates or {})  # a search's own measurement of its mixtures
        self.search_best = search_best  # the name of the search's best among them
        self.mixtures: dict[str, dict[str, int]] = {}
        self.notes: list[str] = []
        self.target_prep: Prepared | None = None
        self.champion: Any = None
        self.checkpoints: dict[int, str] = {}
        self.folder: Path | None = None  # where the target runs' weights go

    def identity(self) -> dict[str, Any]:
        return {"mixtures": self.given, "seeds": self.seeds, "first_seed": self.first_seed}

    def parent_tags(self) -> dict[str, str]:
        return {STRATEGIES_TAG: str(self.folder)} if self.folder is not None else {}

    # -- the mixtures: baselines, the caller's, the champion (deduplicated) --------------------

    def _add(self, name: str, mix: Mapping[str, int]) -> None:
        for other, m in self.mixtures.items():
            if same_counts(m, mix):
                self.notes.append(f"{name} has the counts of {other}: trained once, as {other}")
                return
        self.mixtures[name] = {a: int(n) for a, n in mix.items()}

    def check(self, pools: Pools) -> None:
        from allocator.mixture import point_from_counts, uniform_point

        cfg = self.cfg
        plan = pools.plan(cfg.budget_unit, cfg.budget)  # a budget the pool cannot fill: UserError
        self.mixtures, self.notes = {}, []
        self._add("uniform", plan.allocate(uniform_point(pools.abilities)))
        sizes = pools.caps(cfg.budget_unit)
        proportional = plan.allocate(point_from_counts({a: float(n) for a, n in sizes.items()}))
        if same_counts(proportional, self.mixtures["uniform"]):
            self.notes.append("proportional equals uniform (every pool holds as much): trained once, as uniform")
        else:
            self.mixtures["proportional"] = proportional
        for name, mix in self.given.items():
            self._add(name, mix)
        confirm_specs(self.mixtures, pool_caps(pools), 1, 0)  # an unknown ability or too many: UserError

    def prepare_more(self, prep: Prepared, out: Callable[[str], None]) -> list[Prepared]:
        """The registry's champion joins when it fits (a strategy must beat it to take the
        alias), then the target: its pools, built or loaded base, refusals, all before anything
        is written."""
        from allocator.report.registry import find_champion

        cfg = prep.cfg
        if cfg.target is not None:
            champ = find_champion(prep.uri, cfg.tracking.experiment)
            fits = champ is not None and set(champ.mixture) == set(prep.pools.abilities)
            fits = fits and champ is not None and (champ.budget, champ.budget_unit) == (cfg.budget, cfg.budget_unit)
            if champ is not None and fits:
                self.champion = champ
                before = len(self.mixtures)
                self._add("champion", champ.mixture)
                if len(self.mixtures) == before:  # the champion's counts are one of ours
                    dup = next(n for n, m in self.mixtures.items() if same_counts(m, champ.mixture))
                    self.notes[-1] = f"the champion (version {champ.version}) has the counts of {dup}: trained once"
            elif champ is not None:
                self.notes.append(
                    f"the champion (version {champ.version}) has other abilities or budget: not retrained"
                )
        if cfg.target is None:
            return []

        def said(line: str) -> None:
            out(f"target: {line.strip()}")

        try:
            self.target_prep = prepare(cfg.for_target(), said, lambda pools: None)
            # the target's own tokenizer may keep fewer examples: every mixture must fit its pool
            confirm_specs(self.mixtures, pool_caps(self.target_prep.pools), 1, 0, target=True)
        except UserError as e:  # the target's own model, data or pool: say it is the target's
            raise UserError(f"target: {e}") from None
        return [self.target_prep]

    def check_cluster(self, cluster: Mapping[str, float]) -> None:
        from ray_cluster import LAUNCHER_CPUS

        t = self.cfg.target
        if t is None:
            return
        need = t.workers * t.cpus_per_worker + (LAUNCHER_CPUS if t.workers > 1 else 0)
        if need > cluster.get("CPU", 0) + 1e-9:
            raise UserError(
                f"target: {t.workers} workers x {t.cpus_per_worker} CPU (+{LAUNCHER_CPUS} for the trial launching "
                f"them) need {need:g} CPUs, the Ray cluster has {cluster.get('CPU', 0):g}"
            )
        if t.gpus_per_worker and t.workers * t.gpus_per_worker > cluster.get("GPU", 0) + 1e-9:
            raise UserError(
                f"target: {t.workers} workers x {t.gpus_per_worker} GPU, the Ray cluster has {cluster.get('GPU', 0):g}"
            )

    # -- the grid -----------------------------------------------------------------------------

    def make_specs(self, prep: Prepared) -> list[RunSpec]:
        specs = confirm_specs(self.mixtures, pool_caps(prep.pools), self.seeds, self.first_seed)
        if self.target_prep is not None:
            caps = pool_caps(self.target_prep.pools)
            specs += confirm_specs(self.mixtures, caps, self.seeds, self.first_seed, target=True)
        return specs

    def trials(self, prep: Prepared) -> TrialPlan:
        plan = super().trials(prep)
        if self.target_prep is None:
            plan.announce = lambda conc: f"confirm: {len(self.specs)} proxy runs ({self._shape()}), {conc} at a time"
            return plan
        from ray import tune
        from ray.tune import PlacementGroupFactory

        from allocator.trial.target import TargetLaunch, run_grid_trial
        from ray_cluster import LAUNCHER_CPUS, trial_resources

        cfg, t, tprep = self.cfg, self.cfg.target, self.target_prep
        assert t is not None
        runs = plan.setup.runs
        tsetup = tprep.trial_setup(runs=runs)
        folder = Path(cfg.storage_path).resolve() / "strategies" / f"confirm-{time.strftime('%Y%m%d-%H%M%S')}"
        folder = folder.with_name(f"{folder.name}-{secrets.token_hex(3)}")
        if self.resumed is not None and STRATEGIES_TAG in self.resumed.tags:  # its kept runs' weights are there
            folder = Path(self.resumed.tags[STRATEGIES_TAG])
        self.folder = folder
        # the first seed's target weights are the strategy's model
        self.checkpoints = {
            i: str(folder / s.group)
            for i, s in enumerate(self.specs)
            if s.design == "target" and s.seed == self.first_seed
        }
        launch = TargetLaunch(
            workers=t.workers,
            cpus_per_worker=t.cpus_per_worker,
            gpus_per_worker=t.gpus_per_worker,
            storage_path=str(Path(cfg.storage_path).resolve() / "train"),
            checkpoints=self.checkpoints,
        )
        stages = tuple("target" if s.design == "target" else "proxy" for s in self.specs)
        r = cfg.resources
        proxy_pg = PlacementGroupFactory(
            [{k.upper(): v for k, v in trial_resources(r.cpus_per_trial, r.gpus_per_trial).items()}]
        )
        if t.workers == 1:  # the trial trains the target itself (allocator.trial.target)
            own = {"CPU": t.cpus_per_worker, **({"GPU": t.gpus_per_worker} if t.gpus_per_worker else {})}
            launcher_pg = PlacementGroupFactory([own])
        else:
            launcher_pg = PlacementGroupFactory([{"CPU": LAUNCHER_CPUS}])
        opener = plan.opener

        def open_run(trial: Any) -> Any:
            rec, own = opener(trial)
            if rec.design == "target":  # hashed by the target's pool (its own tokenizer)
                rec.data_hash = tprep.pools.data_hash(rec.mixture)
            return rec, own

        plan.trainable = tune.with_parameters(
            run_grid_trial, proxy=plan.setup, target=tsetup, launch=launch, stages=stages
        )
        plan.resources = lambda config: launcher_pg if stages[int(config["run"])] == "target" else proxy_pg
        plan.reports = lambda rec: t.reports if rec.design == "target" else cfg.proxy.reports
        plan.opener = open_run
        n_target = stages.count("target")
        plan.announce = lambda conc: (
            f"confirm: {len(self.specs) - n_target} proxy runs and {n_target} target runs ({self._shape()}; "
            + (f"each target run on {t.workers} Ray Train workers" if t.workers > 1 else "1 worker each, in its trial")
            + f"), {conc} at a time"
        )
        return plan

    def _shape(self) -> str:
        return f"{len(self.mixtures)} mixtures x {self.seeds} seeds"

    # -- the result -----------------------------------------------------------------------------

    def finish(self, run: JobRun) -> ConfirmResult:
        from allocator.report.tables import confirm_lines
        from allocator.studies.evidence import compare_to_references, rank_agreement

        abilities = run.prep.pools.abilities
        records = self.ordered(run.records)
        group = {s.name: (s.group, s.design) for s in self.specs}
        stages = ["proxy", "target"] if self.target_prep is not None else ["proxy"]
        summary: dict[str, dict[str, dict[str, Any]]] = {st: {} for st in stages}
        for name in self.mixtures:
            for st in stages:
                design = "target" if st == "target" else "confirm"
                rs = [r for r in records if group[r["name"]] == (name, design)]
                summary[st][name] = {
                    "objective": _stats([r["objective"] for r in rs]),
                    "scores": {a: _stats([r["scores"][a] for r in rs]) for a in abilities},
                    "data_hash": rs[0]["data_hash"],
                }
        refs = [b for b in BASELINES if b in self.mixtures]
        comparisons = {
            st: compare_to_references({n: s["objective"]["values"] for n, s in summary[st].items()}, refs)
            for st in stages
        }
        fidelity: dict[str, Any] = {}
        if self.target_prep is not None:
            target_means = {n: s["objective"]["mean"] for n, s in summary["target"].items()}
            fidelity["fresh_proxy"] = rank_agreement(
                {n: s["objective"]["mean"] for n, s in summary["proxy"].items()}, target_means
            )
            if self.estimates:
                searched = {n: float(e["objective"]) for n, e in self.estimates.items() if n in target_means}
                fidelity["search_estimate"] = rank_agreement(searched, target_means)
        curse = self._winners_curse(summary, comparisons)
        result = ConfirmResult(
            mixtures=self.mixtures,
            summary=summary["proxy"],
            runs=records,
            mlflow=run.mlflow(),
            config=run.prep.cfg.to_dict(),
            seconds=0.0,
            seeds=[self.first_seed + k for k in range(self.seeds)],
            target=summary.get("target"),
            comparisons=comparisons,
            fidelity=fidelity,
            winners_curse=curse,
            estimates=self.estimates,
            notes=self.notes,
        )
        result.strategies, result.champion = self._strategies(run, result)
        result.seconds = run.seconds()
        run.tracker.log_json(run.parent, result.to_dict(), "confirm.json")
        lines = confirm_lines(result)
        run.tracker.log_text(run.parent, "\n".join(lines) + "\n", "confirm_table.txt")
        for line in lines + run.closing_lines(result.seconds):
            self.out(line)
        return result

    def _winners_curse(self, summary: Mapping[str, Any], comparisons: Mapping[str, Any]) -> dict[str, Any] | None:
        """Where the search's estimate of its best stood against its fresh proxy runs and the
        target, each relative to the uniform mixture of the same measurement."""
        best = self.search_best
        if best is None or best not in self.estimates or best not in self.mixtures:
            return None
        est = self.estimates[best]
        out: dict[str, Any] = {"mixture": best, "search_estimate": est["objective"], "trial": est["trial"]}
        uniform = self.estimates.get("uniform", {}).get("objective")
        if uniform:  # the search's own uniform baseline
            out["search_vs_uniform"] = est["objective"] / uniform - 1
        for st, s in summary.items():
            out[f"{st}_mean"] = s[best]["objective"]["mean"]
            out[f"{st}_vs_uniform"] = comparisons[st]["uniform"][best]["relative"] if best != "uniform" else 0.0
            means = sorted(s, key=lambda n: -s[n]["objective"]["mean"])
            out[f"{st}_rank"] = means.index(best) + 1
        out["mixtures"] = len(self.mixtures)
        return out

    def _strategies(self, run: JobRun, result: ConfirmResult) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every mixture as a strategy run and registered version; the champion alias moved or
        kept (allocator.studies.evidence.choose_champion)."""
        from allocator.report.registry import log_strategy

        cfg = run.prep.cfg
        on = "target" if result.target is not None else "proxy"
        digest = target_digest(cfg)
        recipe = cfg.target.dump() if cfg.target is not None else {"proxy": cfg.proxy.model_dump(mode="json")}
        config = cfg.to_dict()  # what export rebuilds the examples from: the target's model pinned too
        if self.target_prep is not None:
            config["target"]["model"] = self.target_prep.cfg.model.dump()
        out: list[dict[str, Any]] = []
        for name, mix in self.mixtures.items():
            evidence: dict[str, Any] = {}
            metrics: dict[str, float] = {}
            for st, summ in (("proxy", result.summary), ("target", result.target)):
                if summ is None:
                    continue
                s = summ[name]
                metrics[f"{st}/objective_mean"] = s["objective"]["mean"]
                metrics[f"{st}/objective_std"] = s["objective"]["std"]
                for a, sc in s["scores"].items():
                    metrics[f"{st}/score/{ability_key(a)}"] = sc["mean"]
                evidence[st] = {"objective": s["objective"], "vs": {}}
                for ref, cs in result.comparisons[st].items():
                    if name in cs:
                        c = cs[name]
                        evidence[st]["vs"][ref] = c
                        metrics[f"{st}/vs_{ref}/relative"] = c["relative"]
                        metrics[f"{st}/vs_{ref}/difference"] = c["mean_difference"]
                        metrics[f"{st}/vs_{ref}/p_holm"] = c["p_holm"]
            if name in self.estimates:
                metrics["search/objective"] = float(self.estimates[name]["objective"])
            data_hash = (result.target or result.summary)[name]["data_hash"]
            strategy = {
                "name": name,
                "mixture": mix,
                "confirmed_on": on,
                "data_hash": data_hash,
                "seeds": result.seeds,
                "target_digest": digest,
                "evidence": evidence,
                "budget": cfg.budget,
                "budget_unit": cfg.budget_unit,
            }
            params = {
                **{f"mixture.{ability_key(a)}": n for a, n in mix.items()},
                **{f"recipe.{k}": v for k, v in _flat(recipe).items()},
                "data_hash": data_hash,
                "seeds": json.dumps(result.seeds),
            }
            weights = next((w for i, w in self.checkpoints.items() if self.specs[i].group == name), None)
            if weights is not None and not Path(weights).is_dir():
                weights = None  # a worker on another node wrote it where the driver cannot see
            max_mb = cfg.target.max_checkpoint_mb if cfg.target is not None else 0.0
            run_id, version = log_strategy(
                run.tracker,
                run.parent,
                name=name,
                strategy=strategy,
                params=params,
                metrics=metrics,
                config=config,
                weights=weights,
                max_mb=max_mb,
            )
            out.append({"name": name, "run_id": run_id, "version": version, "mixture": mix})
        return out, self._champion(run.tracker, result, out, digest)

    def _champion(
        self, tracker: Any, result: ConfirmResult, strategies: list[dict[str, Any]], digest: str | None
    ) -> dict[str, Any]:
        """Move the ``champion`` alias, or keep it, as evidence.choose_champion says; and why."""
        from allocator.report.registry import set_champion
        from allocator.studies.evidence import choose_champion, paired_comparison

        if result.target is None:
            return {"alias": None, "reason": "a proxy-only confirmation names no champion"}
        target = result.target
        means = {n: s["objective"]["mean"] for n, s in target.items()}
        best = max(means, key=lambda n: means[n])
        current, alike, vs = None, False, None
        if self.champion is not None:
            # its name here when this confirmation retrained it (same counts)
            current = next((n for n, m in self.mixtures.items() if same_counts(m, self.champion.mixture)), None)
            alike = current is not None and (self.champion.seeds, self.champion.target_digest) == (result.seeds, digest)
            if alike and best != current:
                vs = paired_comparison(target[best]["objective"]["values"], target[current]["objective"]["values"])
            current = current or "(not retrained)"
        name, reason = choose_champion(means, current=current, retrained_alike=alike, best_vs_current=vs)
        out = {"alias": None, "reason": reason, "previous": self.champion.version if self.champion else None}
        if name is not None:
            version = next(s["version"] for s in strategies if s["name"] == name)
            set_champion(tracker, version)
            out.update(alias=version, name=name)
        return out


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_seeds(seeds: int, cfg: OptimizeConfig) -> None:
    """At least one seed; on a target, at least 3 (a paired test across seeds needs a spread)."""
    if seeds < 1:
        raise UserError(f"--seeds {seeds}: must be at least 1")
    if cfg.target is not None and seeds < 3:
        raise UserError(f"--seeds {seeds}: a confirmation on the target needs at least 3 (paired tests across seeds)")


def confirm(
    config: OptimizeConfig | dict | str | Path | None,
    mixtures: Mapping[str, Mapping[str, int]],
    *,
    seeds: int = 3,
    seed_offset: int = 1000,
    estimates: Mapping[str, Mapping[str, Any]] | None = None,
    search_best: str | None = None,
    printer: Callable[[str], None] | None = None,
    resume: str | None = None,
    command: str | None = None,
    **overrides: Any,
) -> ConfirmResult:
    """Train each named mixture, the uniform and proportional baselines and the registry's
    champion afresh with ``seeds`` training seeds, on the proxy and (with a ``target:``
    section) on the target (module doc); ``config`` is as for ``allocator.optimize``.
    ``estimates`` (name -> ``{"objective", "trial"}``) are a search's own measurements of the
    mixtures, ``search_best`` the name of its best (the winner's curse); ``resume`` and
    ``command`` are as for ``allocator.optimize``. Raises ``UserError`` for bad input."""
    out = printer or (lambda s: print(s, flush=True))
    cfg = resolve_config(config, overrides)
    check_seeds(seeds, cfg)
    job = ConfirmJob(cfg, mixtures, seeds, cfg.seed + seed_offset, out, estimates=estimates, search_best=search_best)
    return run_job(cfg, job, out, resume=resume, command=command)
