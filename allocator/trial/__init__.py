"""3. The Ray boundary: one trial is one proxy fine-tune on a Ray worker.

``setup.TrialSetup`` is what crosses to the workers (typed, frozen, built once);
``worker.run_trial`` is the worker body; ``record.TrialRecord`` is what the driver knows
of a trial; ``callback.TrialLog`` is the one Tune callback that turns trial events into
MLflow runs and records; ``prepare`` and ``runner.run_job`` are the one job runner every
job (optimize, study, confirm) runs on.
"""
