"""The worker body: what one trial runs inside a Ray worker, and what it reports.

``run_trial`` reads its mixture and seed from the job's ``TrialSetup``, runs one proxy
fine-tune through the trainers' plain call (trainers.run_proxy) and reports
``trial_metrics`` to Ray Tune at each of the proxy's evaluations: ``objective`` (the
weighted mean of the normalized per-ability scores of allocator.curves.scoring),
``score/<ability>``, ``loss/<ability>``, ``exact_match/<ability>`` or ``choice/<ability>``
for abilities scored so, ``perf/tokens_per_s`` (and ``perf/peak_gpu_memory_mb`` on a GPU),
and the step counts a scheduler and the driver read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from allocator.curves import scoring
from allocator.data.labels import ability_key
from allocator.trial.setup import TrialSetup

__all__ = ["FAULTS_ENV", "injected_fault", "run_trial", "score_base", "train_mixture", "trial_metrics"]

FAULTS_ENV = "ALLOCATOR_INJECT_FAULTS"


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
        k = ability_key(a)  # a label MLflow or Tune would refuse has a key (allocator.data.labels)
        out[f"score/{k}"] = norm[a]
        out[f"loss/{k}"] = s["loss"]
        for m in ("exact_match", "choice"):
            if m in s:
                out[f"{m}/{k}"] = s[m]
    return out


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


def train_mixture(
    setup: TrialSetup,
    mixture: dict[str, int],
    seed: int,
    send: Callable[[dict[str, Any]], None],
    checkpoint: Callable[[Any], None] | None = None,
) -> None:
    """One fine-tune of ``mixture`` under ``setup`` (trainers.run_proxy), each evaluation's
    ``trial_metrics`` and speed handed to ``send`` (Tune's or Ray Train's report). A rank of a
    data-parallel run other than 0 evaluates nothing: it sends the step counts alone."""
    from trainers.proxy import run_proxy

    examples = sum(mixture.values())  # the second objective of a multi-objective search
    full = setup.recipe.steps(examples)  # the steps of the whole run, were it not stopped early

    def report(step: int, raw: dict[str, dict[str, float]], perf: dict[str, float]) -> None:
        metrics = trial_metrics(raw, setup.metrics, setup.base_scores, setup.weights) if raw else {}
        speed = {f"perf/{k}": v for k, v in perf.items()}  # tokens per second, peak GPU memory
        send({"step": step, "steps_total": full, "examples": examples, **metrics, **speed})

    run_proxy(
        model=setup.base,
        tokenizer=setup.tokenizer,
        train=setup.train,
        heldout=setup.heldout,
        metrics=setup.metrics,
        max_new=setup.max_new,
        mixture=mixture,
        recipe=setup.recipe,
        seed=seed,
        max_repeats=setup.max_repeats,
        report=report,
        checkpoint=checkpoint,
    )


def run_trial(params: dict[str, Any], setup: TrialSetup) -> None:
    """One trial (a Tune function trainable; ``setup`` comes through ``tune.with_parameters``)."""
    injected_fault()  # before the heavy imports: a failing trial costs no more than it must
    from ray import tune

    mixture, seed = setup.mixture(params)
    train_mixture(setup, mixture, seed, tune.report)


def score_base(job: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The untrained base's raw scores, on a Ray worker (a Ray task body; ``job`` holds
    ``trainers.proxy.evaluate_base``'s arguments)."""
    from trainers.proxy import evaluate_base

    return evaluate_base(**job)
