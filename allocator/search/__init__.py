"""The job "optimize": Ray Tune + Optuna search the mixture space.

``optimize`` is the job on the runner (allocator.trial.runner); ``samplers`` names the
samplers a search may use, ``sampler`` is the project's growth-curve sampler (thin Optuna
glue over allocator.curves.model.GrowthModel); ``extensions`` holds every use of Ray's and
Optuna's private attributes; ``warmstart`` seeds a search with an earlier result;
``selection`` picks the recommendation (floor, best, Pareto front, what early stopping
saved). The public entry point is ``allocator.optimize``.
"""
