"""The fixed grids of runs: a study's volumes x designs x seeds, a confirmation's mixtures x
seeds (pure), and the job they run as."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from allocator.config import StudyConfig
from allocator.data.pools import Pools
from allocator.errors import UserError
from allocator.trial.prepare import Prepared
from allocator.trial.record import Status, TrialRecord
from allocator.trial.resume import point_key
from allocator.trial.runner import Job, TrialPlan
from allocator.trial.setup import GridRun

__all__ = ["GridJob", "RunSpec", "confirm_specs", "pool_caps", "run_specs"]


@dataclass(frozen=True)
class RunSpec:
    """One proxy run of a study or a confirmation."""

    name: str
    design: str  # "joint" or "isolated"; a confirmation's: "confirm" (a proxy run) or "target"
    ability: str | None  # the trained ability of an isolated run
    volume: int  # the grid's volume (each count is this, capped by its pool)
    seed: int
    mixture: dict[str, int]
    group: str | None = None  # a confirmation's: the mixture's name

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


def pool_caps(pools: Pools) -> dict[str, int]:
    """The most examples each ability's pool can give (with ``max_repeats`` passes)."""
    return pools.caps("examples")


def confirm_specs(
    mixtures: Mapping[str, Mapping[str, int]],
    caps: Mapping[str, int],
    seeds: int,
    first_seed: int,
    *,
    target: bool = False,
) -> list[RunSpec]:
    """Each named mixture with ``seeds`` training seeds from ``first_seed`` (the same seeds for
    every mixture: paired), as proxy runs (``name-sK``) or target runs (``name-target-sK``); a
    mixture naming an unknown ability or more than its pool holds is a ``UserError``."""
    where = "the target's pool" if target else "its pool"
    specs = []
    for name, mix in mixtures.items():
        unknown = [a for a in mix if a not in caps]
        if unknown:
            raise UserError(f"mixture {name!r}: {unknown[0]!r} is not an ability of the pool ({', '.join(caps)})")
        over = [a for a in mix if not 0 <= int(mix[a]) <= caps[a]]
        if over:
            a = over[0]
            raise UserError(f"mixture {name!r}: {a}={mix[a]} is outside 0..{caps[a]} ({where} with max_repeats)")
        full = {a: int(mix.get(a, 0)) for a in caps}
        design, label = ("target", f"{name}-target") if target else ("confirm", name)
        for k in range(seeds):
            specs.append(RunSpec(f"{label}-s{k}", design, None, sum(full.values()), first_seed + k, full, name))
    return specs


class GridJob(Job):
    """A job that runs a fixed grid of runs (``specs``, known once the base is scored) as a
    Ray Tune grid search, one MLflow child run each; every run must finish."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.specs: list[RunSpec] = []

    @abstractmethod
    def make_specs(self, prep: Prepared) -> list[RunSpec]:
        """The grid's runs (may raise ``UserError``: nothing is written yet)."""

    def trials(self, prep: Prepared) -> TrialPlan:
        from ray import tune

        specs = self.make_specs(prep)  # may raise UserError: still nothing written
        self.specs = specs
        runs = tuple(GridRun(dict(s.mixture), s.seed) for s in specs)

        def opener(trial: Any) -> tuple[TrialRecord, dict[str, Any]]:
            spec = specs[int(trial.config["run"])]
            kind = {"confirm": "confirm", "target": "confirm-target"}.get(spec.design, f"study-{spec.design}")
            rec = TrialRecord(trial.trial_id, spec.name, kind, dict(spec.mixture))
            rec.design, rec.ability, rec.volume, rec.seed = spec.design, spec.ability, spec.volume, spec.seed
            return rec, {"design": spec.design, "ability": spec.ability, "volume": spec.volume, "seed": spec.seed}

        def line(rec: TrialRecord, ended: int) -> str:
            own = rec.scores.get(rec.ability) if rec.ability else rec.objective
            shown = f"{own:7.4f}" if own is not None else "   -   "
            what = "own score" if rec.ability else "objective"
            return f"  {ended:03d}/{len(specs):03d}  {rec.name:28s} {what} {shown}  {rec.seconds:6.1f}s  {rec.status}"

        left = list(range(len(specs)))
        if self.resumed is not None:  # a resumed job's ended runs are kept, never run again
            for i, s in enumerate(specs):
                kept = self.resumed.points.get(point_key({"run": i}))
                if kept is not None and (kept.name != s.name or (kept.mixture and kept.mixture != s.mixture)):
                    raise UserError(
                        f"--resume {self.resumed.parent}: its run {i} was {kept.name}, now {s.name} "
                        "(the grid changed, e.g. the registry's champion): it cannot be resumed"
                    )
            done = {key for key, rec in self.resumed.points.items() if rec.status.ended}
            left = [i for i in left if point_key({"run": i}) not in done]
        return TrialPlan(
            setup=prep.trial_setup(runs=runs),
            param_space={"run": tune.grid_search(left)},
            num_samples=1,
            trials=len(specs),
            opener=opener,
            line=line,
            announce=lambda conc: f"{self.kind}: {len(specs)} proxy runs, {conc} at a time",
        )

    def ordered(self, records: Sequence[TrialRecord]) -> list[dict[str, Any]]:
        """The records in the grid's order, as the result file holds them; a run that did not
        finish fails the job (its error named)."""
        order = {s.name: i for i, s in enumerate(self.specs)}
        recs = sorted(records, key=lambda r: order[r.name])
        failed = [r for r in recs if r.status is not Status.FINISHED]
        if failed:
            first = failed[0]
            raise RuntimeError(
                f"{len(failed)} of {len(self.specs)} {self.kind} runs failed, e.g. {first.name}: {first.error}"
            )
        return [r.to_dict() for r in recs]
