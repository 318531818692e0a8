"""The worker body: what one trial runs inside a Ray worker, and what it reports.

``run_trial`` reads its mixture and seed from the job's ``TrialSetup``, runs one proxy
fine-tune through the trainers' plain call (trainers.run_proxy) and reports
``trial_metrics`` to Ray Tune at each of the proxy's evaluations: ``objective`` (the
weighted mean of the normalized per-ability scores of allocator.curves.scoring),
``score/<ability>``, ``loss/<ability>``, ``exact_match/<ability>`` or ``choice/<ability>``
for abilities scored so, ``perf/tokens_per_s``, ``perf/train_seconds`` and
``perf/eval_seconds`` (so far), ``perf/peak_gpu_memory_mb`` on a GPU, and the step counts a
scheduler and the driver read.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
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


FAULTS = ("fail", "nan", "oom", "kill")


def injected_fault() -> str | None:
    """Fault injection for reliability tests (as Ray's own restore tests do it, by marker
    files): with ``ALLOCATOR_INJECT_FAULTS=DIR`` each trial takes the next ordinal ``k``
    (it creates ``DIR/started-k``, atomically), and ``DIR/<fault>-k`` makes it

    - ``fail``: raise here;
    - ``kill``: SIGKILL its own worker process (a node's OOM killer, a preempted machine);
    - ``nan``: train at lr 1e30, so that the fine-tune itself diverges (returned);
    - ``oom``: train under an address-space limit a little above what the worker holds, so
      that a real allocation fails (returned).

    Without the variable it does nothing and returns None."""
    folder = os.environ.get(FAULTS_ENV)
    if not folder:
        return None
    k = 0
    while True:
        try:
            os.close(os.open(os.path.join(folder, f"started-{k}"), os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            k += 1
    fault = next((f for f in FAULTS if os.path.exists(os.path.join(folder, f"{f}-{k}"))), None)
    if fault == "fail":
        raise RuntimeError(f"injected fault: trial {k} ({FAULTS_ENV}={folder})")
    if fault == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return fault


@contextmanager
def _address_space_limit(extra_mb: int = 2) -> Iterator[None]:
    """The process's virtual memory capped at what it maps now plus ``extra_mb`` (the soft
    limit, restored after: a reused worker runs later trials)."""
    import resource

    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra_mb * 2**20, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


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
        bad = next((k for k, v in metrics.items() if not math.isfinite(v)), None)
        if bad is not None:  # a NaN told to Tune and Optuna would be a result; it is a failure
            raise FloatingPointError(f"{bad} is {metrics[bad]} at step {step} (the fine-tune diverged)")
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
    fault = injected_fault()  # before the heavy imports: a failing trial costs no more than it must
    from ray import tune

    mixture, seed = setup.mixture(params)
    if fault == "nan":
        setup = dataclasses.replace(setup, recipe=dataclasses.replace(setup.recipe, lr=1e30))
    limit: AbstractContextManager[None] = nullcontext()
    if fault == "oom":
        import torch  # before the limit: it is for training, not for loading code or starting threads

        torch.randn(256, 256) @ torch.randn(256, 256)  # OpenMP's threads start now (their stacks count)
        limit = _address_space_limit()
    with limit:
        train_mixture(setup, mixture, seed, tune.report)


def score_base(job: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The untrained base's raw scores, on a Ray worker (a Ray task body; ``job`` holds
    ``trainers.proxy.evaluate_base``'s arguments)."""
    from trainers.proxy import evaluate_base

    return evaluate_base(**job)
