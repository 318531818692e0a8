"""``allocator study``: how each ability grows with its data (thin orchestration).

Proxy runs over the volume grid of ``study:`` (allocator.config.StudyConfig),
scheduled as Ray Tune trials (a grid, no search), in two designs:

- **joint**: every ability gets ``v`` examples (as the instruction-tuning
  dynamics papers did);
- **isolated**: one ability gets ``v``, the others none. Every run scores every
  ability, so these also measure how one ability's data moves the others
  (allocator.transference).

Volume 0 is the untrained base, evaluated once: its normalized score is 0 by
definition (allocator.scoring), so it anchors every curve at no cost. Each point
repeats over ``study.seeds`` training seeds (model init, LoRA init and data
order); the examples themselves are the first ``v`` of the ability's fixed
order (allocator.pools), the same in every seed, so the spread measures training
noise, not which examples were drawn. Counts are capped by each pool.

The analysis (allocator.analysis) fits the growth curves, transference and
complexity; ``allocator.recommend`` turns them into an allocation for any budget.
Like ``optimize``, every user error surfaces before anything is written, a
finished run is in MLflow the moment it finishes, and the parent's status tells
the truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from allocator.config import OptimizeConfig, StudyConfig

__all__ = ["ConfirmResult", "RunSpec", "StudyResult", "confirm", "confirm_lines", "run_specs", "study"]


@dataclass(frozen=True)
class RunSpec:
    """One proxy run of a study."""

    name: str
    design: str  # "joint" or "isolated" (or "confirm" for confirmation runs)
    ability: str | None  # the trained ability of an isolated run
    volume: int  # the grid's volume (each count is this, capped by its pool)
    seed: int
    mixture: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_specs(study_cfg: StudyConfig, abilities: Sequence[str], caps: Mapping[str, int], seed: int) -> list[RunSpec]:
    """The runs of a study: positive volumes x designs (x abilities, for isolated) x seeds."""
    specs = []
    for v in (v for v in study_cfg.volumes if v > 0):
        for design in study_cfg.designs:
            trained = [None] if design == "joint" else list(abilities)
            for b in trained:
                mixture = {a: (min(v, caps[a]) if b is None or a == b else 0) for a in abilities}
                for k in range(study_cfg.seeds):
                    name = f"{design}-{b + '-' if b else ''}v{v}-s{k}"
                    specs.append(RunSpec(name, design, b, v, seed + k, mixture))
    return specs


@dataclass
class StudyResult:
    """What a study measured and fitted; ``to_dict()`` is the ``--output`` JSON, which
    ``allocator.recommend`` reads back."""

    abilities: list[str]
    metrics: dict[str, str]
    weights: dict[str, float]
    caps: dict[str, int]
    base_scores: dict[str, dict[str, float]]
    runs: list[dict[str, Any]]
    analysis: dict[str, Any]
    pool: dict[str, Any]
    mlflow: dict[str, Any]
    config: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _trainable(params: dict[str, Any], setup: dict[str, Any]) -> None:
    """Runs in a Ray worker: one proxy fine-tune of the study grid."""
    from allocator.search import train_trial

    spec = setup["specs"][params["run"]]
    train_trial(setup, spec["mixture"], spec["seed"])


def _run_log(tracker: Any, specs: list[RunSpec], data_hash: Callable, abilities: list[str], printer: Callable) -> Any:
    from ray import tune

    from allocator.search import trial_error_line

    class RunLog(tune.Callback):
        """Driver side: one MLflow child run per proxy run, one printed line when it ends."""

        def __init__(self) -> None:
            self.records: dict[int, dict[str, Any]] = {}
            self.started: dict[int, float] = {}
            self.ended = 0

        def _open(self, trial: Any) -> dict[str, Any]:
            i = int(trial.config["run"])
            if i in self.records:
                return self.records[i]
            spec = specs[i]
            rec = {**spec.to_dict(), "status": "RUNNING", "scores": {}, "losses": {}, "exact_match": {}}
            rec["data_hash"] = data_hash(spec.mixture)
            params: dict[str, Any] = {f"mixture.{a}": n for a, n in spec.mixture.items()}
            params.update(design=spec.design, ability=spec.ability, volume=spec.volume, seed=spec.seed)
            params["data_hash"] = rec["data_hash"]
            kind = spec.design if spec.design == "confirm" else f"study-{spec.design}"
            rec["mlflow_run_id"] = tracker.start_child(trial.trial_id, spec.name, kind, params)
            self.records[i] = rec
            self.started[i] = time.perf_counter()
            return rec

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._open(trial)

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            rec = self._open(trial)
            keep = ("objective", "score/", "exact_match/", "loss/")
            tracker.log_metrics(
                rec["mlflow_run_id"], {k: v for k, v in result.items() if k.startswith(keep)}, int(result["step"])
            )
            rec["objective"] = float(result["objective"])
            rec["scores"] = {a: float(result[f"score/{a}"]) for a in abilities}
            rec["losses"] = {a: float(result[f"loss/{a}"]) for a in abilities}
            rec["exact_match"] = {a: float(result[k]) for a in abilities if (k := f"exact_match/{a}") in result}

        def _finish(self, trial: Any, status: str, error: str | None = None) -> None:
            rec = self._open(trial)
            rec["status"], rec["error"] = status, error
            rec["seconds"] = round(time.perf_counter() - self.started[int(trial.config["run"])], 1)
            if error:
                tracker.set_tag(rec["mlflow_run_id"], "allocator.error", error[:5000])
            tracker.end(rec["mlflow_run_id"], status)
            self.ended += 1
            own = rec["scores"].get(rec["ability"]) if rec["ability"] else rec.get("objective")
            shown = f"{own:7.4f}" if own is not None else "   -   "
            what = "own score" if rec["ability"] else "objective"
            secs = rec["seconds"]
            printer(f"  {self.ended:03d}/{len(specs):03d}  {rec['name']:28s} {what} {shown}  {secs:6.1f}s  {status}")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finish(trial, "FINISHED" if self._open(trial)["scores"] else "FAILED")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._finish(trial, "FAILED", trial_error_line(trial))

    return RunLog()


@dataclass
class _Job:
    """What ``_run_job`` hands to its ``finish`` step."""

    cfg: OptimizeConfig
    prep: Any
    tracker: Any
    parent: str
    records: list[dict[str, Any]]
    t_start: float

    def mlflow(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.prep.uri,
            "experiment_id": self.tracker.experiment_id,
            "parent_run_id": self.parent,
        }


def _run_job(
    cfg: OptimizeConfig,
    out: Callable[[str], None],
    kind: str,
    make_specs: Callable[[Any], list[RunSpec]],
    finish: Callable[[_Job], Any],
) -> Any:
    """Prepare (every user error first), run the specs as a Ray Tune grid with one MLflow
    child run each under a ``kind`` parent, then ``finish`` (analysis, artifacts); the
    parent ends FINISHED only after ``finish`` returns."""
    from ray import tune

    from allocator.optimize import concurrency, open_parent, prepare
    from allocator.tracking import ended_status, open_tracker
    from ray_cluster import connect, disconnect, trial_resources

    t_start = time.perf_counter()
    prep = prepare(cfg, out)
    pools = prep.pools
    abilities = pools.abilities
    specs = make_specs(prep)  # may raise UserError: still nothing written
    most = {a: max([s.mixture[a] for s in specs] or [0]) for a in abilities}

    started_ray = connect(cfg.ray.address, cfg.ray.num_cpus)
    tracker = None
    try:
        conc = concurrency(cfg)
        tracker = open_tracker(prep.uri, cfg.tracking.experiment)
        parent, run_name = open_parent(tracker, cfg, prep, kind)
        out(f"{kind}: {len(specs)} proxy runs, {conc} at a time")
        setup = {
            "config": cfg.to_dict(),
            "specs": [s.to_dict() for s in specs],
            "base_weights": prep.base.weights,
            "tokenizer": prep.tok.spec(),
            # the prefixes the runs reach (a count cycles only past its pool's end)
            "train": {a: pools.train[a][: most[a]] for a in abilities},
            "heldout": pools.heldout,
            "metrics": pools.metrics,
            "max_new": pools.max_new,
            "max_repeats": pools.max_repeats,
            "base_scores": prep.base_scores,
            "weights": prep.weights,
        }
        log = _run_log(tracker, specs, pools.data_hash, abilities, out)
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, setup=setup),
            trial_resources(cfg.resources.cpus_per_trial, cfg.resources.gpus_per_trial),
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"run": tune.grid_search(list(range(len(specs))))},
            tune_config=tune.TuneConfig(max_concurrent_trials=conc, reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"{run_name}-{parent[:8]}",
                storage_path=str(Path(cfg.storage_path).resolve()),
                callbacks=[log],
                verbose=0,
            ),
        )
        tuner.fit()  # Ctrl-C: Tune's handler ends fit() early (allocator.search)
        records = [log.records[i] for i in sorted(log.records)]
        ended = [r for r in records if r["status"] in ("FINISHED", "FAILED")]
        if len(ended) < len(specs):
            raise KeyboardInterrupt(f"the {kind} stopped after {len(ended)} of {len(specs)} runs")
        failed = [r for r in records if r["status"] != "FINISHED"]
        if failed:
            first = failed[0]
            raise RuntimeError(
                f"{len(failed)} of {len(specs)} {kind} runs failed, e.g. {first['name']}: {first.get('error')}"
            )
        result = finish(_Job(cfg, prep, tracker, parent, records, t_start))
        tracker.close("FINISHED")
        return result
    except BaseException as e:
        if tracker is not None:
            tracker.close(ended_status(e))
        raise
    finally:
        disconnect(started_ray)


def _caps(pools: Any) -> dict[str, int]:
    return {a: len(pools.train[a]) * pools.max_repeats for a in pools.abilities}


def _closing_lines(job: _Job, seconds: float) -> list[str]:
    from allocator.tracking import ui_command

    uri = job.prep.uri
    return [
        f"MLflow: {uri} (experiment {job.tracker.experiment_id}, parent run {job.parent})",
        f"  view: {ui_command(uri)}",
        f"done in {seconds:.0f}s",
    ]


def study(
    config: OptimizeConfig | dict | str | Path | None = None,
    *,
    printer: Callable[[str], None] | None = None,
    **overrides: Any,
) -> StudyResult:
    """Measure every ability's growth over the ``study:`` grid (module doc).

    ``config`` is as for ``allocator.optimize``. Raises ``UserError`` for bad input.
    """
    from allocator.analysis import analyze, artifacts, summary_lines
    from allocator.optimize import _as_config

    out = printer or (lambda s: print(s, flush=True))
    cfg = _as_config(config, overrides)

    def finish(job: _Job) -> StudyResult:
        import matplotlib.pyplot as plt

        pools = job.prep.pools
        abilities = pools.abilities
        analysis = analyze(job.records, abilities, cfg.study, seeds=cfg.study.seeds)
        result = StudyResult(
            abilities=abilities,
            metrics=pools.metrics,
            weights=job.prep.weights,
            caps=_caps(pools),
            base_scores=job.prep.base_scores,
            runs=job.records,
            analysis=analysis,
            pool=pools.summary,
            mlflow=job.mlflow(),
            config=cfg.to_dict(),
            seconds=round(time.perf_counter() - job.t_start, 1),
        )
        job.tracker.log_json(job.parent, result.to_dict(), "study.json")
        lines = summary_lines(analysis, abilities)
        job.tracker.log_text(job.parent, "\n".join(lines) + "\n", "growth_table.txt")
        for name, fig in artifacts(job.records, analysis, abilities):
            job.tracker.log_figure(job.parent, fig, name)
            plt.close(fig)
        for line in lines + _closing_lines(job, result.seconds):
            out(line)
        return result

    return _run_job(
        cfg, out, "study", lambda prep: run_specs(cfg.study, prep.pools.abilities, _caps(prep.pools), cfg.seed), finish
    )


@dataclass
class ConfirmResult:
    """Fresh proxy runs of named mixtures over several seeds; ``to_dict()`` is the JSON."""

    mixtures: dict[str, dict[str, int]]
    summary: dict[str, dict[str, Any]]  # name -> objective and per-ability scores: mean, std, per seed
    runs: list[dict[str, Any]]
    mlflow: dict[str, Any]
    config: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _confirm_specs(mixtures: Mapping[str, Mapping[str, int]], pools: Any, seeds: int, first_seed: int) -> list[RunSpec]:
    from allocator.errors import UserError

    caps = _caps(pools)
    specs = []
    for name, mix in mixtures.items():
        unknown = [a for a in mix if a not in caps]
        if unknown:
            raise UserError(f"mixture {name!r}: {unknown[0]!r} is not an ability of the pool ({', '.join(caps)})")
        over = [a for a in mix if not 0 <= int(mix[a]) <= caps[a]]
        if over:
            a = over[0]
            raise UserError(f"mixture {name!r}: {a}={mix[a]} is outside 0..{caps[a]} (its pool with max_repeats)")
        full = {a: int(mix.get(a, 0)) for a in caps}
        for k in range(seeds):
            specs.append(RunSpec(f"{name}-s{k}", "confirm", None, sum(full.values()), first_seed + k, full))
    return specs


def _stats(xs: Sequence[float]) -> dict[str, Any]:
    import statistics

    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "values": list(xs)}


def confirm(
    config: OptimizeConfig | dict | str | Path | None,
    mixtures: Mapping[str, Mapping[str, int]],
    *,
    seeds: int = 3,
    seed_offset: int = 1000,
    printer: Callable[[str], None] | None = None,
    **overrides: Any,
) -> ConfirmResult:
    """Train each named mixture afresh with ``seeds`` training seeds (``config.seed +
    seed_offset + k``: not the seeds a study or search used) and report the objective
    and per-ability scores as mean and spread. The runs of one seed share everything
    but the mixture, so differences between mixtures are paired by seed."""
    from allocator.optimize import _as_config

    out = printer or (lambda s: print(s, flush=True))
    cfg = _as_config(config, overrides)

    def finish(job: _Job) -> ConfirmResult:
        abilities = job.prep.pools.abilities
        summary: dict[str, dict[str, Any]] = {}
        for name in mixtures:
            rs = [r for r in job.records if r["name"].rsplit("-s", 1)[0] == name]
            summary[name] = {
                "objective": _stats([r["objective"] for r in rs]),
                "scores": {a: _stats([r["scores"][a] for r in rs]) for a in abilities},
            }
        result = ConfirmResult(
            mixtures={n: dict(m) for n, m in mixtures.items()},
            summary=summary,
            runs=job.records,
            mlflow=job.mlflow(),
            config=cfg.to_dict(),
            seconds=round(time.perf_counter() - job.t_start, 1),
        )
        job.tracker.log_json(job.parent, result.to_dict(), "confirm.json")
        lines = confirm_lines(result)
        job.tracker.log_text(job.parent, "\n".join(lines) + "\n", "confirm_table.txt")
        for line in lines + _closing_lines(job, result.seconds):
            out(line)
        return result

    first = cfg.seed + seed_offset
    return _run_job(cfg, out, "confirm", lambda prep: _confirm_specs(mixtures, prep.pools, seeds, first), finish)


def confirm_lines(result: ConfirmResult) -> list[str]:
    """Objective per mixture (mean, std, per seed) and the paired difference to the first."""
    names = list(result.mixtures)
    w = max(10, *(len(n) for n in names))
    lines = [f"confirmed over {len(result.summary[names[0]]['objective']['values'])} fresh seeds:"]
    ref = names[0]
    for n in names:
        o = result.summary[n]["objective"]
        per = ", ".join(f"{v:.4f}" for v in o["values"])
        line = f"  {n:{w}s} objective {o['mean']:.4f} +- {o['std']:.4f}  ({per})"
        if n != ref:
            diffs = [a - b for a, b in zip(o["values"], result.summary[ref]["objective"]["values"], strict=True)]
            d = _stats(diffs)
            line += f"  vs {ref}: {d['mean']:+.4f} +- {d['std']:.4f} (paired by seed)"
        lines.append(line)
    return lines
