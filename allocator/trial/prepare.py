"""A job's setup before Ray and MLflow: every user error first, then the base.

Order matters for "nothing half-written": the data (read, split and tokenized: every data
error surfaces here), the job's own checks of user input (the budget, its bounds), and the
tracking URI are validated first; then the base is built or loaded and evaluated once (a
cache, not a result; its scores anchor the normalized scores of allocator.curves.scoring).
Only after this does the job runner start Ray or write anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from allocator.config import OptimizeConfig
from allocator.data.pools import Pools, prepare_pools
from allocator.mixture.plan import BudgetPlan
from allocator.trial.setup import GridRun, TrialSetup
from trainers.pretrain import CachedBase

__all__ = ["Prepared", "evaluate_base", "prepare"]


@dataclass
class Prepared:
    """Everything a job needs before Ray and MLflow: validated, built, evaluated."""

    cfg: OptimizeConfig
    pools: Pools
    tok: Any
    base: CachedBase
    base_scores: dict[str, dict[str, float]]
    weights: dict[str, float]
    uri: str

    def trial_setup(self, *, plan: BudgetPlan | None = None, runs: tuple[GridRun, ...] = ()) -> TrialSetup:
        """What every trial of the job receives: a search's (``plan``: each trial's point
        becomes counts under it, and trials get the prefixes any such allocation can reach)
        or a grid's (``runs``: the prefixes the runs reach)."""
        pools = self.pools
        if plan is not None:
            train = pools.shipped(plan)
        else:
            train = pools.prefixes({a: max([r.mixture[a] for r in runs] or [0]) for a in pools.abilities})
        return TrialSetup(
            base=self.base.ref(self.cfg.model.spec()),
            tokenizer=self.tok.spec(),
            recipe=self.cfg.proxy.recipe(),
            train=train,
            heldout=pools.heldout,
            metrics=pools.metrics,
            max_new=pools.max_new,
            max_repeats=pools.max_repeats,
            base_scores=self.base_scores,
            weights=self.weights,
            seed=self.cfg.seed,
            plan=plan,
            runs=runs,
        )


def prepare(cfg: OptimizeConfig, out: Callable[[str], None], check: Callable[[Pools], None]) -> Prepared:
    """Read, split and tokenize the pool, check the weights, ``check(pools)`` (the job's checks
    of user input, e.g. the budget) and the tracking URI, then build or load the base and score
    it once: every user error surfaces before anything is written (the model cache is a
    cache, not a result)."""
    from allocator.report.tracking import check_uri, default_tracking_uri
    from trainers.pretrain import build_or_load_base

    pools, tok, (docs, corpus_digest) = prepare_pools(cfg, out)
    weights = cfg.objective_weights(pools.abilities)
    check(pools)
    for a, info in pools.summary["abilities"].items():
        lost = f", {info['truncated_away']} truncated away" if info["truncated_away"] else ""
        out(f"  pool {a}: {info['train']} train, {info['heldout']} held-out ({info['metric']}){lost}")
    uri = cfg.tracking.uri or default_tracking_uri()
    check_uri(uri)
    base = build_or_load_base(
        cfg.model.spec(),
        cfg.pretrain.recipe(),
        tok=tok,
        docs=(lambda: docs) if docs is not None else None,
        corpus_digest=corpus_digest,
        threads=os.cpu_count(),
        log=out,
    )
    out(f"base model: {base.meta['params']:,} parameters, {base.path} (built in {base.meta['build_seconds']}s)")
    base_scores = evaluate_base(base, tok, pools, cfg)
    out("untrained base: " + ", ".join(f"{a} {_raw(s, pools.metrics[a])}" for a, s in base_scores.items()))
    return Prepared(cfg, pools, tok, base, base_scores, weights, uri)


def evaluate_base(base: CachedBase, tok: Any, pools: Pools, cfg: OptimizeConfig) -> dict[str, dict[str, float]]:
    """The untrained base's raw scores on the held-out sets: the 0 of every normalized score."""
    import torch

    from trainers.evaluation import evaluate

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        model = base.ref(cfg.model.spec()).load(tok)
        return evaluate(
            model, tok, pools.heldout, metrics=pools.metrics, max_new=pools.max_new, max_length=cfg.model.max_length
        )
    finally:
        torch.set_num_threads(threads)


def _raw(s: dict[str, float], metric: str) -> str:
    return f"em {s['exact_match']:.3f}" if metric == "exact_match" else f"loss {s['loss']:.3f}"
