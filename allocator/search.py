"""Ray Tune + Optuna over per-ability mixtures; one trial is one proxy fine-tune.

The space has one coordinate ``u_<ability>`` in [0, 1] per ability, mapped to
example counts by ``allocator.mixtures.allocate`` (flat-Dirichlet weights,
water-filled under pool caps, summing to the budget in examples or tokens). The uniform
mixture runs as the first point (``points_to_evaluate``): it is the baseline the
search must beat, and the sampler learns from it like from any trial.

Trials report ``objective`` (weighted mean of the normalized per-ability scores
of ``allocator.scoring``), ``score/<ability>``, ``loss/<ability>`` and, for
abilities scored by exact match, ``exact_match/<ability>`` at each of the
proxy's evaluations, so a scheduler can stop bad trials early. The driver alone writes
to MLflow, from a Tune callback, as results arrive: a finished trial is a
FINISHED run in the store the moment it finishes, whatever happens to the
driver afterwards (tests/test_crash.py kills it). Tune's own copy under
``storage_path`` is synced later and may lag behind a crash.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from allocator import scoring
from allocator.mixtures import allocate, uniform_point
from allocator.sampler import ALLOCATION_ATTR, SCORES_ATTR, point_from_counts
from allocator.tracking import Tracker

if TYPE_CHECKING:
    from allocator.warmstart import WarmStart

__all__ = [
    "BaselineKeepingASHA",
    "TrialRecord",
    "compute_stats",
    "make_sampler",
    "mixture_of",
    "run_search",
    "train_trial",
    "trial_error_line",
    "trial_metrics",
]


def trial_metrics(
    raw: Mapping[str, Mapping[str, float]],
    metrics: Mapping[str, str],
    base: Mapping[str, Mapping[str, float]],
    weights: Mapping[str, float],
) -> dict[str, float]:
    """The flat metrics of one evaluation: objective, normalized and raw scores per ability."""
    norm = scoring.scores(raw, metrics, base)
    out = {"objective": scoring.objective(norm, weights)}
    for a, s in raw.items():
        out[f"score/{a}"] = norm[a]
        out[f"loss/{a}"] = s["loss"]
        if "exact_match" in s:
            out[f"exact_match/{a}"] = s["exact_match"]
    return out


@dataclass
class TrialRecord:
    trial_id: str
    name: str
    kind: str  # "baseline" or "search"
    mixture: dict[str, int]
    status: str = "PENDING"
    objective: float | None = None
    scores: dict[str, float] = field(default_factory=dict)  # normalized score per ability (allocator.scoring)
    exact_match: dict[str, float] = field(default_factory=dict)  # abilities scored by exact match
    losses: dict[str, float] = field(default_factory=dict)  # held-out response loss per ability
    data_hash: str | None = None  # content hash of the exact training examples
    origin: str | None = None  # how the mixture was chosen: baseline, warm start, the sampler (its model)
    steps: int | None = None  # optimizer steps trained when last evaluated
    steps_total: int | None = None  # the steps of the whole run (more than steps: stopped early)
    evaluations: int = 0  # evaluations reported (fewer than proxy.reports: stopped early by the scheduler)
    violations: list[str] = field(default_factory=list)  # abilities below the floor (search.floor)
    predicted: float | None = None  # the growth-curve model's predicted objective, for its proposals
    seconds: float | None = None
    mlflow_run_id: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _point(config: Mapping[str, float], abilities: list[str]) -> dict[str, float]:
    return {a: float(config[f"u_{a}"]) for a in abilities}


def mixture_of(params: Mapping[str, float], abilities: list[str], plan: Mapping[str, Any]) -> dict[str, int]:
    """The counts a trial's parameters stand for: its point under the plan, and under
    ``budget_fraction`` of the budget when the search is multi-objective."""
    if "budget_fraction" in params:
        plan = {**plan, "budget": max(1, round(float(params["budget_fraction"]) * plan["budget"]))}
    return allocate(_point(params, abilities), plan)


FAULTS_ENV = "ALLOCATOR_INJECT_FAULTS"


def injected_fault() -> None:
    """Fault injection for reliability tests (as Ray's own restore tests do it, by marker
    files): with ``ALLOCATOR_INJECT_FAULTS=DIR`` each trial takes the next ordinal ``k``
    (it creates ``DIR/started-k``, atomically) and raises when ``DIR/fail-k`` exists.
    Without the variable it does nothing."""
    folder = os.environ.get(FAULTS_ENV)
    if not folder:
        return
    k = 0
    while True:
        try:
            os.close(os.open(os.path.join(folder, f"started-{k}"), os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            k += 1
    if os.path.exists(os.path.join(folder, f"fail-{k}")):
        raise RuntimeError(f"injected fault: trial {k} ({FAULTS_ENV}={folder})")


def train_trial(setup: Mapping[str, Any], mixture: Mapping[str, int], seed: int) -> None:
    """Runs in a Ray worker: one proxy fine-tune on ``mixture``, reporting ``trial_metrics``
    to Tune at each evaluation (``setup``: see ``run_search``)."""
    injected_fault()  # before the heavy imports: a failing trial costs no more than it must
    from trainers.proxy import proxy_steps, run_proxy

    cfg = setup["config"]

    examples = sum(mixture.values())  # the second objective of a multi-objective search
    full = proxy_steps(examples, cfg["proxy"])  # the steps of the whole run, were it not stopped early

    def report(step: int, raw: dict[str, dict[str, float]]) -> None:
        metrics = trial_metrics(raw, setup["metrics"], setup["base_scores"], setup["weights"])
        tune.report({"step": step, "steps_total": full, "examples": examples, **metrics})

    run_proxy(
        base_weights=setup["base_weights"],
        model_cfg=cfg["model"],
        proxy=cfg["proxy"],
        tokenizer=setup["tokenizer"],
        train=setup["train"],
        heldout=setup["heldout"],
        metrics=setup["metrics"],
        max_new=setup["max_new"],
        mixture=mixture,
        seed=seed,
        max_repeats=setup["max_repeats"],
        report=report,
    )


def _trainable(params: dict[str, Any], setup: dict[str, Any]) -> None:
    """One trial of the search: the mixture ``params`` stands for."""
    train_trial(setup, mixture_of(params, setup["abilities"], setup["plan"]), setup["config"]["seed"])


def trial_error_line(trial: Any) -> str:
    """The last line of a failed trial's traceback, which names the exception."""
    # Tune writes the worker's traceback to the trial's local error file before
    # calling back; the copy in storage (trial.get_error) may not be synced yet
    path = trial.error_file
    text = Path(path).read_text(errors="replace").strip() if path and Path(path).is_file() else ""
    return text.splitlines()[-1] if text else "the trial raised an error (see Ray's logs)"


class _TrialLog(tune.Callback):
    """Driver side: one MLflow child run per trial, one printed line per finished trial."""

    def __init__(
        self,
        tracker: Tracker,
        abilities: list[str],
        plan: dict[str, Any],
        data_hash: Callable[[dict[str, int]], str],
        trials: int,
        printer: Callable[[str], None],
        origin: Mapping[str, Any] | None = None,
        reports: int = 1,
    ) -> None:
        self.tracker, self.abilities, self.plan, self.data_hash = tracker, abilities, plan, data_hash
        self.reports = reports
        self.total, self.printer = trials, printer
        self.records: dict[str, TrialRecord] = {}
        self.started: dict[str, float] = {}
        self.searched = 0
        origin = origin or {}
        self.sampler = origin.get("sampler", "sampler")
        first = origin.get("first") or {"uniform-baseline": uniform_point(abilities)}
        self.first: dict[str, dict[str, float]] = dict(first)
        self.proposal: Callable[[str], dict[str, float] | None] = origin.get("proposal") or (lambda _: None)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._open(trial)

    def _open(self, trial: Any) -> TrialRecord:
        if trial.trial_id in self.records:
            return self.records[trial.trial_id]
        point = _point(trial.config, self.abilities)
        mixture = mixture_of(trial.config, self.abilities, self.plan)
        # the enqueued points (baseline, warm start) come back as they went in, each once
        label = next((k for k, p in self.first.items() if p == point), None)
        if label is not None:
            del self.first[label]
        proposal = self.proposal(trial.trial_id)
        predicted = proposal["predicted"] if proposal else None
        if label == "uniform-baseline":
            kind, name, origin = "baseline", label, "baseline: the uniform mixture"
        else:
            self.searched += 1
            kind, name = "search", f"trial-{self.searched:03d}"
            if label is not None:
                origin = f"warm start: {label.removeprefix('warm-')}"
            elif proposal:
                origin = f"{self.sampler} model: predicted {proposal['predicted']:.4f} +- {proposal['sd']:.4f}"
                if proposal.get("explore"):
                    origin += f" (explores {', '.join(proposal['explore'])} past the largest volumes tried)"
            else:
                origin = f"{self.sampler} sampler"
        rec = TrialRecord(
            trial.trial_id, name, kind, mixture, "RUNNING", data_hash=self.data_hash(mixture), origin=origin
        )
        rec.predicted = predicted
        params: dict[str, Any] = {f"mixture.{a}": n for a, n in mixture.items()}
        params.update({f"u.{a}": round(u, 6) for a, u in point.items()})
        params["data_hash"] = rec.data_hash
        params["origin"] = origin
        rec.mlflow_run_id = self.tracker.start_child(trial.trial_id, name, kind, params)
        self.records[trial.trial_id] = rec
        self.started[trial.trial_id] = time.perf_counter()
        return rec

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        rec = self.records[trial.trial_id]
        metrics = {
            k: v for k, v in result.items() if k == "objective" or k.startswith(("score/", "exact_match/", "loss/"))
        }
        assert rec.mlflow_run_id is not None
        self.tracker.log_metrics(rec.mlflow_run_id, metrics, step=int(result["step"]))
        rec.objective = float(result["objective"])
        rec.steps, rec.evaluations = int(result["step"]), rec.evaluations + 1
        rec.steps_total = int(result["steps_total"])
        rec.scores = {a: float(result[f"score/{a}"]) for a in self.abilities}
        rec.losses = {a: float(result[f"loss/{a}"]) for a in self.abilities}
        rec.exact_match = {a: float(result[k]) for a in self.abilities if (k := f"exact_match/{a}") in result}

    def _finish(self, trial: Any, status: str, error: str | None = None) -> None:
        rec = self._open(trial)  # a trial can fail before it ever started (e.g. its runtime_env)
        rec.status, rec.error = status, error
        rec.seconds = round(time.perf_counter() - self.started[trial.trial_id], 1)
        assert rec.mlflow_run_id is not None
        if error:
            self.tracker.set_tag(rec.mlflow_run_id, "allocator.error", error[:5000])
        # in MLflow an early-stopped trial ran fine (FINISHED, tagged allocator.early_stopped)
        self.tracker.end(rec.mlflow_run_id, "FINISHED" if status == "EARLY_STOPPED" else status)
        label = "baseline " if rec.kind == "baseline" else f"{rec.name[6:]}/{self.total:03d}"
        mix = " ".join(f"{a}={n}" for a, n in rec.mixture.items())
        obj = f"{rec.objective:.4f}" if rec.objective is not None else "  -   "
        shown = "STOPPED" if status == "EARLY_STOPPED" else status  # early, at step rec.steps
        self.printer(f"  {label}  objective {obj}  {rec.seconds:6.1f}s  {shown:8s}  {mix}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        rec = self._open(trial)
        if rec.objective is None:
            self._finish(trial, "FAILED")
        elif rec.evaluations < self.reports:  # the scheduler stopped it: its objective is partial
            self.tracker.set_tag(rec.mlflow_run_id or "", "allocator.early_stopped", "true")
            self._finish(trial, "EARLY_STOPPED")
        else:
            self._finish(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, "FAILED", trial_error_line(trial))


def compute_stats(records: Sequence[TrialRecord]) -> dict[str, Any]:
    """Optimizer steps trained vs. what every trial trained in full would have cost (each
    trial's own full run: a multi-objective search's smaller mixtures train fewer steps
    by design, which early stopping did not save): what early stopping saved."""
    ran = [r for r in records if r.steps is not None]
    trained = sum(r.steps or 0 for r in ran)
    would = sum(r.steps_total or r.steps or 0 for r in ran)
    return {
        "early_stopped": sum(r.status == "EARLY_STOPPED" for r in records),
        "steps_trained": trained,
        "steps_without_early_stopping": would,
        "compute_saved": round(1.0 - trained / would, 4) if would else 0.0,
    }


class BaselineKeepingASHA(ASHAScheduler):
    """Ray's ASHA that never stops the trials ``keep`` names (the uniform baseline).
    Every result still counts towards the rungs' cutoffs. The search is measured against
    the baseline (its gain, the floor), so a partial baseline would void the whole
    search: with several trials at a time a searched trial can reach a rung first and
    set a cutoff the baseline misses."""

    def __init__(self, keep: Callable[[Any], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keep = keep

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and self._keep(trial):
            self._num_stopped -= 1  # Ray's count of stopped trials
            return TrialScheduler.CONTINUE
        return action


def make_sampler(
    search: Mapping[str, Any],
    seed: int,
    plan: Mapping[str, Any],
    weights: Mapping[str, float],
    warm: WarmStart | None = None,
) -> Any:
    """The Optuna sampler ``search.sampler`` names (config.SearchConfig), seeded; the
    growth-curve sampler also fits a warm-start study's points and transference."""
    import optuna

    name, startup = search["sampler"], search["n_startup_trials"]
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
    if name == "growth":
        from allocator.sampler import GrowthCurveSampler

        return GrowthCurveSampler(
            plan,
            weights=weights,
            n_startup_trials=startup,
            kappa=search["kappa"],
            explore_every=search.get("explore_every", 3),
            seed=seed,
            prior=warm.prior if warm is not None else None,
            transfer=warm.transfer if warm is not None else None,
        )
    return optuna.samplers.RandomSampler(seed=seed)


class _ScoredOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch that also stores a finished trial's per-ability scores on its
    Optuna trial (user attribute ``allocator.scores``) before telling Optuna the
    objective: the growth-curve sampler models them, and an Optuna storage keeps them."""

    def __init__(
        self,
        abilities: list[str],
        reports: int,
        warm_trials: Sequence[Mapping[str, Any]] = (),
        budget: int = 1,
        minimum: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        self._abilities, self._reports, self._budget = abilities, reports, budget
        self._minimum = dict(minimum or {})  # the space's (allocator.mixtures): points map to counts above it
        self._warm_trials = list(warm_trials)
        super().__init__(**kwargs)

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        import optuna

        # a warm start's measured trials: completed trials of this Optuna study, not Tune trials
        multi = isinstance(self._metric, list)
        for t in self._warm_trials:
            point = point_from_counts(t["mixture"], self._minimum)
            params: dict[str, float] = {f"u_{a}": point[a] for a in self._abilities}
            examples = sum(t["mixture"].values())
            if multi:
                params["budget_fraction"] = min(1.0, examples / self._budget)
            self._ot_study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions=self._space,
                    values=[t["objective"], examples] if multi else [t["objective"]],
                    user_attrs={SCORES_ATTR: t["scores"], ALLOCATION_ATTR: t["mixture"], "allocator.warm_start": True},
                )
            )

    def proposal(self, trial_id: str) -> dict[str, Any] | None:
        """What the growth-curve sampler predicted for a trial it proposed."""
        ot_trial = self._ot_trials.get(trial_id)
        proposals = getattr(self._sampler, "proposals", None)
        return proposals.get(ot_trial.number) if ot_trial is not None and proposals is not None else None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        import optuna

        ot_trial = self._ot_trials.get(trial_id)  # Ray's map of Tune trial ids to Optuna trials
        if result and ot_trial is not None and trial_id not in self._completed_trials:
            if int(result.get("training_iteration", self._reports)) < self._reports:
                # stopped early by the scheduler: a partial score, not a point of the landscape;
                # PRUNED keeps its intermediate values for samplers that use them
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
                self._completed_trials.add(trial_id)
                return
            if all(f"score/{a}" in result for a in self._abilities):
                ot_trial.set_user_attr(SCORES_ATTR, {a: float(result[f"score/{a}"]) for a in self._abilities})
        super().on_trial_complete(trial_id, result, error)


def run_search(
    *,
    config: dict[str, Any],
    setup: dict[str, Any],
    data_hash: Callable[[dict[str, int]], str],
    tracker: Tracker,
    storage_path: str,
    run_name: str,
    max_concurrent: int,
    resources: dict[str, float],
    printer: Callable[[str], None],
    warm: WarmStart | None = None,
) -> list[TrialRecord]:
    """Run the uniform baseline and ``config['trials']`` searched mixtures; return every trial.
    A warm start (allocator.warmstart) adds its measured trials to the Optuna study and
    runs its mixtures right after the baseline.

    ``setup`` is what every trial receives (through Ray's object store): ``config``,
    ``abilities``, ``plan`` (allocator.mixtures.allocate), ``base_weights``,
    ``tokenizer`` (a spec), ``train`` (tokenized prefixes), ``heldout``, ``metrics``,
    ``max_new``, ``max_repeats``, ``base_scores`` and ``weights``."""
    import optuna

    abilities: list[str] = setup["abilities"]
    sampler = make_sampler(config["search"], config["seed"], setup["plan"], setup["weights"], warm)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first = {"uniform-baseline": uniform_point(abilities)}
    minimum = setup["plan"].get("minimum")
    for label, counts in (warm.enqueue if warm is not None else {}).items():
        first[f"warm-{label}"] = point_from_counts(counts, minimum)
    reports = int(config["proxy"]["reports"])
    multi = bool(config["search"]["multi_objective"])
    space: dict[str, Any] = {f"u_{a}": tune.uniform(0.0, 1.0) for a in abilities}
    starts = [{f"u_{a}": u for a, u in p.items()} for p in first.values()]
    if multi:  # (objective, examples): a mixture may use less than the budget
        space["budget_fraction"] = tune.uniform(config["search"]["min_budget_fraction"], 1.0)
        starts = [{**p, "budget_fraction": 1.0} for p in starts]
    searcher = _ScoredOptunaSearch(
        abilities,
        reports,
        warm_trials=warm.trials if warm is not None else (),
        budget=int(setup["plan"]["budget"]),
        minimum=minimum,
        metric=["objective", "examples"] if multi else "objective",
        mode=["max", "min"] if multi else "max",
        sampler=sampler,
        points_to_evaluate=starts,
    )
    origin = {"sampler": config["search"]["sampler"], "first": first, "proposal": searcher.proposal}
    log = _TrialLog(tracker, abilities, setup["plan"], data_hash, config["trials"], printer, origin, reports)
    scheduler = None
    if config["search"]["scheduler"] == "asha":
        uniform = first["uniform-baseline"]
        scheduler = BaselineKeepingASHA(
            lambda trial: _point(trial.config, abilities) == uniform,
            metric="objective",
            mode="max",
            time_attr="training_iteration",  # one per proxy evaluation
            max_t=reports,
            grace_period=config["search"]["grace_period"],
            reduction_factor=config["search"]["reduction_factor"],
        )
    trainable = tune.with_resources(tune.with_parameters(_trainable, setup=setup), resources)
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=config["trials"] + 1,
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=run_name, storage_path=storage_path, callbacks=[log], verbose=0),
    )
    # Ctrl-C during fit() goes to Tune's own SIGINT handler, which only sets a flag: the loop
    # ends between steps, stops the trial actors and returns. A KeyboardInterrupt raised at an
    # arbitrary point inside Tune's loop instead (TUNE_DISABLE_SIGINT_HANDLER=1) was measured
    # to be lost now and then (the run went on to exit 0) or to leave the process hanging at exit.
    tuner.fit()
    records = sorted(log.records.values(), key=lambda r: (r.kind != "baseline", r.name))
    ended = [r for r in records if r.status in ("FINISHED", "FAILED", "EARLY_STOPPED")]
    if len(ended) < config["trials"] + 1:
        # Tune stops early only when interrupted (its SIGINT handler returns from fit()):
        # the search is incomplete, and must not be reported as finished
        raise KeyboardInterrupt(f"the search stopped after {len(ended)} of {config['trials'] + 1} trials")
    return records
