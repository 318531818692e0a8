"""Ray Tune, Optuna and MLflow, extended: every use of their private names is in this module.

Each use names the version it was checked against (Ray 2.60.0, Optuna 5.0.0, MLflow 3.17.2,
the pinned ones in constraints.txt); an upgrade of any reads this module first.

- ``ScoredOptunaSearch``: Ray's ``OptunaSearch`` that stores a finished trial's per-ability
  scores on its Optuna trial before telling Optuna the objective (the growth-curve sampler
  models them, and an Optuna storage keeps them), takes a stopped trial for PRUNED rather
  than COMPLETE, and adds a warm start's measured trials to its Optuna study.
- ``BaselineKeepingASHA``: Ray's ASHA that never stops the uniform baseline.
- ``set_trial_system_attr``: a system attribute on the trial a sampler is sampling.
- ``mlflow_name_problem``: what MLflow would refuse in a run's param, metric or tag name, asked
  before the first run is written (MLflow checks only as each name is logged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from allocator.data.labels import ability_key

__all__ = ["BaselineKeepingASHA", "ScoredOptunaSearch", "mlflow_name_problem", "set_trial_system_attr"]


def mlflow_name_problem(kind: str, name: str) -> str | None:
    """MLflow's own objection to ``name`` as a run's ``kind`` ("param", "metric" or "tag") name,
    or None. Its validators are what the store applies when the name is logged."""
    # MLflow 3.17.2: mlflow.utils.validation's _validate_{param,metric,tag}_name (characters
    # [/\w.\- :], a path normpath leaves alone) and MAX_ENTITY_KEY_LENGTH (250), all private
    from mlflow.exceptions import MlflowException
    from mlflow.utils import validation

    check = {
        "param": validation._validate_param_name,
        "metric": validation._validate_metric_name,
        "tag": validation._validate_tag_name,
    }[kind]
    try:
        check(name)
    except MlflowException as e:
        return e.message.split("\n")[0]
    if len(name) > validation.MAX_ENTITY_KEY_LENGTH:
        return f"{len(name)} characters, more than MLflow's {validation.MAX_ENTITY_KEY_LENGTH}"
    return None


def set_trial_system_attr(study: optuna.Study, trial: optuna.trial.FrozenTrial, key: str, value: Any) -> None:
    """Set a system attribute of ``trial`` while a sampler samples it: Optuna hands samplers a
    ``FrozenTrial`` and has no public setter; its own samplers write through the storage too."""
    # Optuna 5.0.0: Study._storage (the study's BaseStorage), FrozenTrial._trial_id (the storage's id)
    study._storage.set_trial_system_attr(trial._trial_id, key, value)


class ScoredOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch that also stores a finished trial's per-ability scores on its
    Optuna trial (user attribute ``scores_attr``) before telling Optuna the objective.
    ``warm_trials`` (``{"point", "objective", "examples", "user_attrs"}``) become completed
    trials of its Optuna study, not Tune trials; so do ``resumed_trials`` (``trial_state``'s
    dicts), after them, in their old order."""

    def __init__(
        self,
        abilities: list[str],
        reports: int,
        *,
        scores_attr: str,
        warm_trials: Sequence[Mapping[str, Any]] = (),
        resumed_trials: Sequence[Mapping[str, Any]] = (),
        **kwargs: Any,
    ) -> None:
        self._abilities, self._reports, self._scores_attr = abilities, reports, scores_attr
        self._warm_trials, self._resumed_trials = list(warm_trials), list(resumed_trials)
        super().__init__(**kwargs)

    @property
    def optuna_study(self) -> optuna.Study:
        # Ray 2.60.0: OptunaSearch._ot_study, the Optuna study it drives
        return self._ot_study

    def _setup_study(self, mode: Any) -> None:
        # Ray 2.60.0: OptunaSearch._setup_study(mode) creates _ot_study; _space holds the
        # Optuna distributions, _metric the metric name (a list when multi-objective)
        super()._setup_study(mode)
        multi = isinstance(self._metric, list)
        for t in self._warm_trials:
            self._ot_study.add_trial(
                optuna.trial.create_trial(
                    params=dict(t["point"]),
                    distributions=self._space,
                    values=[t["objective"], t["examples"]] if multi else [t["objective"]],
                    user_attrs=dict(t["user_attrs"]),
                )
            )
        for t in self._resumed_trials:
            self._ot_study.add_trial(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState[t["state"]],
                    values=t["values"],
                    params=dict(t["params"]),
                    distributions=self._space,
                    user_attrs=dict(t["user_attrs"]),
                    system_attrs=dict(t["system_attrs"]),
                    intermediate_values={int(k): v for k, v in t["intermediate_values"].items()},
                )
            )

    def trial_state(self, trial_id: str) -> dict[str, Any] | None:
        """A Tune trial's Optuna trial as JSON (what a resumed study adds back), or None."""
        ot_trial = self.optuna_trial(trial_id)
        if ot_trial is None:
            return None
        t = self._ot_study.get_trials(deepcopy=False)[ot_trial.number]
        return {
            "number": t.number,
            "state": t.state.name,
            "values": t.values,
            "params": t.params,
            "user_attrs": t.user_attrs,
            "system_attrs": t.system_attrs,
            "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
        }

    def optuna_trial(self, trial_id: str) -> optuna.trial.Trial | None:
        """The Optuna trial behind a Tune trial (None before it was suggested)."""
        # Ray 2.60.0: OptunaSearch._ot_trials maps Tune trial ids to Optuna trials
        return self._ot_trials.get(trial_id)

    def states(self) -> dict[str, int]:
        """How many of its Optuna study's trials are in each state (COMPLETE, FAIL, PRUNED,
        RUNNING...), a warm start's measured trials included."""
        # Ray 2.60.0: OptunaSearch._ot_study, the Optuna study it asks and tells
        counts: dict[str, int] = {}
        for t in self._ot_study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def sampler(self) -> optuna.samplers.BaseSampler:
        # Ray 2.60.0: OptunaSearch._sampler, the sampler it was given
        return self._sampler

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self.optuna_trial(trial_id)
        # Ray 2.60.0: OptunaSearch._completed_trials, the Tune trial ids already told to Optuna
        if error and ot_trial is not None and trial_id not in self._completed_trials:
            # Ray's OptunaSearch tells a trial that failed after a report COMPLETE with that
            # report's stale value: a failure is FAIL, whatever it reported before
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        if result and ot_trial is not None and trial_id not in self._completed_trials:
            if int(result.get("training_iteration", self._reports)) < self._reports:
                # stopped early by the scheduler: a partial score, not a point of the landscape;
                # PRUNED keeps its intermediate values for samplers that use them
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
                self._completed_trials.add(trial_id)
                return
            names = {a: f"score/{ability_key(a)}" for a in self._abilities}
            if all(n in result for n in names.values()):
                ot_trial.set_user_attr(self._scores_attr, {a: float(result[n]) for a, n in names.items()})
        super().on_trial_complete(trial_id, result, error)


class BaselineKeepingASHA(ASHAScheduler):
    """Ray's ASHA that never stops the trials ``keep`` names (the uniform baseline).
    Every result still counts towards the rungs' cutoffs. The search is measured against
    the baseline (its gain, the floor), so a partial baseline would void the whole
    search: with several trials at a time a searched trial can reach a rung first and
    set a cutoff the baseline misses."""

    def __init__(self, keep: Callable[[Any], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keep = keep

    @property
    def stopped(self) -> int:
        """Trials ASHA stopped."""
        # Ray 2.60.0: AsyncHyperBandScheduler._num_stopped counts the trials it stopped
        return self._num_stopped

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and self._keep(trial):
            self._num_stopped -= 1  # Ray 2.60.0: its count of stopped trials, as above
            return TrialScheduler.CONTINUE
        return action
