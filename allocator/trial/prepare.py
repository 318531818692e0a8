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
from typing import TYPE_CHECKING, Any

from allocator.config import OptimizeConfig
from allocator.data.pools import Pools, prepare_pools, trainer_errors
from allocator.errors import UserError
from allocator.mixture.plan import BudgetPlan
from allocator.trial.setup import GridRun, TrialSetup
from trainers.hub import PretrainedBase
from trainers.pretrain import CachedBase

if TYPE_CHECKING:
    from trainers.config import ModelSpec
    from trainers.models import ModelRef

__all__ = ["Prepared", "evaluate_base", "prepare"]


@dataclass
class Prepared:
    """Everything a job needs before Ray and MLflow: validated, built, evaluated (the base's
    scores of a pretrained model come from a Ray worker: ``base_scores`` is None until the
    runner has them, allocator.trial.runner)."""

    cfg: OptimizeConfig
    pools: Pools
    tok: Any
    base: CachedBase | PretrainedBase
    base_scores: dict[str, dict[str, float]] | None
    weights: dict[str, float]
    uri: str

    @property
    def spec(self) -> ModelSpec:
        """The model every trial loads (a pretrained one pinned to its commit)."""
        return self.base.spec if isinstance(self.base, PretrainedBase) else self.cfg.model.spec()

    def base_ref(self) -> ModelRef:
        """What a trial loads: the built-in base's weights, or the pinned pretrained model (each
        worker loads it itself: the checkpoint never travels through Ray). A hub model carries
        the driver's hub token for gated or private repositories: through Ray's object store,
        not its runtime environment, which Ray writes to its logs."""
        from trainers.hub import is_local
        from trainers.models import ModelRef

        if isinstance(self.base, PretrainedBase):
            spec = self.base.spec
            hub = spec.name_or_path is not None and not is_local(spec.name_or_path)
            token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") if hub else None
            return ModelRef(spec, token=token)
        return self.base.ref(self.spec)

    def trial_setup(self, *, plan: BudgetPlan | None = None, runs: tuple[GridRun, ...] = ()) -> TrialSetup:
        """What every trial of the job receives: a search's (``plan``: each trial's point
        becomes counts under it, and trials get the prefixes any such allocation can reach)
        or a grid's (``runs``: the prefixes the runs reach)."""
        pools = self.pools
        assert self.base_scores is not None, "the base is scored before the trials are planned"
        if plan is not None:
            train = pools.shipped(plan)
        else:
            train = pools.prefixes({a: max([r.mixture[a] for r in runs] or [0]) for a in pools.abilities})
        return TrialSetup(
            base=self.base_ref(),
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

    def base_job(self) -> dict[str, Any]:
        """The keyword arguments of ``trainers.proxy.evaluate_base`` for this job's base."""
        return {
            "model": self.base_ref(),
            "tokenizer": self.tok.spec(),
            "heldout": self.pools.heldout,
            "metrics": self.pools.metrics,
            "max_new": self.pools.max_new,
            "recipe": self.cfg.proxy.recipe(),
        }

    def set_base_scores(self, scores: dict[str, dict[str, float]], out: Callable[[str], None]) -> None:
        self.base_scores = scores
        metrics = self.pools.metrics
        out("untrained base: " + ", ".join(f"{a} {_raw(s, metrics[a])}" for a, s in scores.items()))


def prepare(
    cfg: OptimizeConfig,
    out: Callable[[str], None],
    check: Callable[[Pools], None],
    check_store: Callable[[str], None] = lambda uri: None,
) -> Prepared:
    """Check and pin a pretrained model, read, split and tokenize the pool, check the weights,
    ``check(pools)`` (the job's checks of user input, e.g. the budget), the tracking URI and
    ``check_store(uri)`` (what a resumed job reads from the store), then build or load the
    built-in base and score it once: every user error surfaces before anything is written
    (the model cache is a cache, not a result). A pretrained base is scored
    by the runner on a Ray worker, where a model too large for the driver fits."""
    from allocator.report.tracking import check_names, check_uri, default_tracking_uri
    from trainers.pretrain import build_or_load_base

    spec = cfg.model.spec()
    pretrained = None
    if spec.name_or_path is not None:
        from trainers.hub import resolve_model

        with trainer_errors():
            pretrained = resolve_model(spec)
        spec = pretrained.spec
        # what every result records: the folder as an absolute path, a hub id at its commit
        model = cfg.model.model_copy(update={"name_or_path": spec.name_or_path, "revision": spec.revision})
        cfg = cfg.model_copy(update={"model": model})
    pools, tok, (docs, corpus_digest) = prepare_pools(cfg, out, spec)
    weights = cfg.objective_weights(pools.abilities)
    check(pools)
    for a, info in pools.summary["abilities"].items():
        lost = f", {info['truncated_away']} truncated away" if info["truncated_away"] else ""
        out(f"  pool {a}: {info['train']} train, {info['heldout']} held-out ({info['metric']}){lost}")
    uri = cfg.tracking.uri or default_tracking_uri()
    check_uri(uri)
    check_names(cfg.to_dict(), pools.abilities)
    check_store(uri)
    if cfg.proxy.kind == "qlora" and cfg.resources.gpus_per_trial == 0:
        _check_cpu_qlora()
    if pretrained is not None:
        params = f"{pretrained.meta['params']:,}" if pretrained.meta.get("params") else "?"
        pin = f" at {spec.revision}" if spec.revision else ""
        out(f"base model: {spec.name_or_path}{pin}, {params} parameters (loaded by each worker)")
        return Prepared(cfg, pools, tok, pretrained, None, weights, uri)
    base = build_or_load_base(
        spec,
        cfg.pretrain.recipe(),
        tok=tok,
        docs=(lambda: docs) if docs is not None else None,
        corpus_digest=corpus_digest,
        threads=os.cpu_count(),
        log=out,
    )
    out(f"base model: {base.meta['params']:,} parameters, {base.path} (built in {base.meta['build_seconds']}s)")
    prep = Prepared(cfg, pools, tok, base, None, weights, uri)
    if cfg.resources.gpus_per_trial == 0:
        # the built-in base is scored here, where it was built, on the CPU as its trials run: it is
        # tiny (a second); with GPUs per trial, a worker scores it on a GPU as trials see it
        prep.set_base_scores(evaluate_base(prep), out)
    return prep


def _check_cpu_qlora() -> None:
    """``qlora`` with no GPU for a trial: refused up front when bitsandbytes cannot train a
    4-bit base honestly on this machine's CPU (each worker checks its own again)."""
    from trainers.quantization import cpu_4bit_problem

    problem = cpu_4bit_problem()
    if problem:
        raise UserError(f"proxy.kind qlora: resources.gpus_per_trial is 0 and {problem}; use a GPU or proxy.kind lora")


def evaluate_base(prep: Prepared) -> dict[str, dict[str, float]]:
    """The untrained base's raw scores on the held-out sets, on this machine (all its CPUs)."""
    import torch

    from trainers.proxy import evaluate_base as score

    return score(**prep.base_job(), threads=os.cpu_count() or 1, device=torch.device("cpu"))


def _raw(s: dict[str, float], metric: str) -> str:
    if metric == "loss":
        return f"loss {s['loss']:.3f}"
    return f"em {s['exact_match']:.3f}" if metric == "exact_match" else f"choice {s['choice']:.3f}"
