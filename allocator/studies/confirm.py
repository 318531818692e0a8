"""``allocator confirm``: named mixtures trained afresh over several seeds (a job on the runner).

Each mixture is trained with ``seeds`` training seeds (``config.seed + seed_offset + k``:
not the seeds a study or search used) and reported as mean and spread of its objective and
per-ability scores. The runs of one seed share everything but the mixture, so differences
between mixtures are paired by seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from allocator.config import OptimizeConfig, resolve_config
from allocator.report.results import ConfirmResult
from allocator.studies.specs import GridJob, RunSpec, confirm_specs, pool_caps
from allocator.trial.prepare import Prepared
from allocator.trial.runner import JobRun, run_job

__all__ = ["ConfirmJob", "confirm"]


class ConfirmJob(GridJob):
    kind = "confirm"

    def __init__(
        self, cfg: OptimizeConfig, mixtures: Mapping[str, Mapping[str, int]], seeds: int, first_seed: int, out: Any
    ) -> None:
        super().__init__(out)
        self.cfg, self.mixtures, self.seeds, self.first_seed = cfg, mixtures, seeds, first_seed

    def make_specs(self, prep: Prepared) -> list[RunSpec]:
        return confirm_specs(self.mixtures, pool_caps(prep.pools), self.seeds, self.first_seed)

    def finish(self, run: JobRun) -> ConfirmResult:
        from allocator.report.tables import confirm_lines, paired_stats

        abilities = run.prep.pools.abilities
        records = self.ordered(run.records)
        summary: dict[str, dict[str, Any]] = {}
        for name in self.mixtures:
            rs = [r for r in records if r["name"].rsplit("-s", 1)[0] == name]
            summary[name] = {
                "objective": paired_stats([r["objective"] for r in rs]),
                "scores": {a: paired_stats([r["scores"][a] for r in rs]) for a in abilities},
            }
        result = ConfirmResult(
            mixtures={n: dict(m) for n, m in self.mixtures.items()},
            summary=summary,
            runs=records,
            mlflow=run.mlflow(),
            config=run.prep.cfg.to_dict(),
            seconds=run.seconds(),
        )
        run.tracker.log_json(run.parent, result.to_dict(), "confirm.json")
        lines = confirm_lines(result)
        run.tracker.log_text(run.parent, "\n".join(lines) + "\n", "confirm_table.txt")
        for line in lines + run.closing_lines(result.seconds):
            self.out(line)
        return result


def confirm(
    config: OptimizeConfig | dict | str | Path | None,
    mixtures: Mapping[str, Mapping[str, int]],
    *,
    seeds: int = 3,
    seed_offset: int = 1000,
    printer: Callable[[str], None] | None = None,
    **overrides: Any,
) -> ConfirmResult:
    """Train each named mixture afresh with ``seeds`` training seeds (module doc) and report
    the objective and per-ability scores as mean and spread; ``config`` is as for
    ``allocator.optimize``. Raises ``UserError`` for bad input."""
    out = printer or (lambda s: print(s, flush=True))
    cfg = resolve_config(config, overrides)
    return run_job(cfg, ConfirmJob(cfg, mixtures, seeds, cfg.seed + seed_offset, out), out)
