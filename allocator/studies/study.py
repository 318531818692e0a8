"""``allocator study``: how each ability grows with its data (a job on the runner).

Proxy runs over the volume grid of ``study:`` (allocator.config.StudyConfig),
scheduled as Ray Tune trials (a grid, no search), in two designs:

- **joint**: every ability gets ``v`` examples (as the instruction-tuning
  dynamics papers did);
- **isolated**: one ability gets ``v``, the others none. Every run scores every
  ability, so these also measure how one ability's data moves the others
  (allocator.curves.transference).

Volume 0 is the untrained base, evaluated once: its normalized score is 0 by
definition (allocator.curves.scoring), so it anchors every curve at no cost. Each point
repeats over ``study.seeds`` training seeds (model init, LoRA init and data
order); the examples themselves are the first ``v`` of the ability's fixed
order (allocator.data.pools), the same in every seed, so the spread measures training
noise, not which examples were drawn. Counts are capped by each pool.

The analysis (allocator.studies.analysis) fits the growth curves, transference and
complexity; ``allocator.recommend`` turns them into an allocation for any budget.
Like ``optimize``, every user error surfaces before anything is written, a
finished run is in MLflow the moment it finishes, and the parent's status tells
the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from allocator.config import OptimizeConfig, resolve_config
from allocator.report.results import StudyResult
from allocator.studies.specs import GridJob, RunSpec, pool_caps, run_specs
from allocator.trial.prepare import Prepared
from allocator.trial.runner import JobRun, run_job

__all__ = ["StudyJob", "study"]


class StudyJob(GridJob):
    kind = "study"

    def __init__(self, cfg: OptimizeConfig, out: Callable[[str], None]) -> None:
        super().__init__(out)
        self.cfg = cfg

    def make_specs(self, prep: Prepared) -> list[RunSpec]:
        return run_specs(self.cfg.study, prep.pools.abilities, pool_caps(prep.pools), self.cfg.seed)

    def finish(self, run: JobRun) -> StudyResult:
        import matplotlib.pyplot as plt

        from allocator.report.figures import study_figures
        from allocator.report.tables import growth_table
        from allocator.studies.analysis import analyze

        cfg, pools = self.cfg, run.prep.pools
        records = self.ordered(run.records)
        analysis = analyze(records, pools.abilities, cfg.study, seeds=cfg.study.seeds)
        result = StudyResult(
            abilities=pools.abilities,
            metrics=pools.metrics,
            weights=run.prep.weights,
            caps=pool_caps(pools),
            base_scores=run.prep.base_scores,
            runs=records,
            analysis=analysis,
            pool=pools.summary,
            mlflow=run.mlflow(),
            config=run.prep.cfg.to_dict(),
            seconds=run.seconds(),
        )
        run.tracker.log_json(run.parent, result.to_dict(), "study.json")
        lines = growth_table(analysis, pools.abilities)
        run.tracker.log_text(run.parent, "\n".join(lines) + "\n", "growth_table.txt")
        for name, fig in study_figures(analysis, pools.abilities):
            run.tracker.log_figure(run.parent, fig, name)
            plt.close(fig)
        for line in lines + run.closing_lines(result.seconds):
            self.out(line)
        return result


def study(
    config: OptimizeConfig | dict | str | Path | None = None,
    *,
    printer: Callable[[str], None] | None = None,
    resume: str | None = None,
    command: str | None = None,
    **overrides: Any,
) -> StudyResult:
    """Measure every ability's growth over the ``study:`` grid (module doc).

    ``config``, ``resume`` and ``command`` are as for ``allocator.optimize``. Raises
    ``UserError`` for bad input.
    """
    out = printer or (lambda s: print(s, flush=True))
    cfg = resolve_config(config, overrides)
    return run_job(cfg, StudyJob(cfg, out), out, resume=resume, command=command)
