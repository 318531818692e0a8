"""The proxy fine-tune: one trial of the search, written out as one plain loop.

A plain call (``run_proxy``): plain data in, plain results out, no Ray, no MLflow. Given the
model (``ModelRef``), a mixture (ability -> example count) and the pool (token ids and loss
masks per ability, already tokenized and truncated by the caller), it takes the first n examples
of each ability's fixed order (nested sampling, cycled when n exceeds the
order), fine-tunes for ``ceil(n_total * epochs / batch_size)`` steps with the
loss on response tokens only, and evaluates every ability on its held-out set
``reports`` times (the last at the end), handing each evaluation to the
``report`` callback (a Ray Tune search reports it to Tune, so that a scheduler may stop
a bad trial early).

``kind="lora"``: peft LoRA on every linear layer of the frozen base (the recipe
the proxy stands in for). ``kind="full"``: all parameters, for pools where a
from-scratch proxy is the honest choice (as in RegMix and DoReMi).

Deterministic for a given seed and thread count: the same seed initialises
LoRA and orders the data in every trial, so trials differ only in the mixture.
It runs on the GPU when one is visible (Ray exposes the GPUs a trial reserved
via ``resources.gpus_per_trial`` and hides them otherwise), else on the CPU.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trainers.config import ProxyRecipe
from trainers.errors import TrainerError
from trainers.evaluation import HeldoutItem, collate, evaluate
from trainers.models import ModelRef
from trainers.tokenizer import tokenizer_from_spec

__all__ = ["ProxyResult", "Report", "run_proxy", "select_examples", "wrap_lora"]

Report = Callable[[int, dict[str, dict[str, float]]], None]  # step, raw scores per ability


@dataclass(frozen=True)
class ProxyResult:
    steps: int
    examples: int
    scores: dict[str, dict[str, float]]  # ability -> {"loss", and "exact_match" where scored so}


def select_examples(pool: Mapping[str, Sequence[Any]], mixture: Mapping[str, int], max_repeats: int = 1) -> list[Any]:
    """The first ``mixture[a]`` examples of each ability's fixed order, cycling through the
    order up to ``max_repeats`` passes."""
    chosen: list[Any] = []
    for ability, n in mixture.items():
        available = pool[ability]
        if n > len(available) * max_repeats:
            raise TrainerError(f"{ability}: {n} examples requested, the pool has {len(available)} x {max_repeats}")
        full, part = divmod(n, len(available)) if available else (0, 0)
        chosen.extend(list(available) * full + list(available[:part]))
    return chosen


def wrap_lora(model: Any, recipe: ProxyRecipe) -> Any:
    """peft LoRA adapters on every linear layer of ``model``, which stays frozen."""
    from peft import LoraConfig, get_peft_model  # heavy import, only where LoRA is used

    cfg = LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, cfg)


def run_proxy(
    *,
    model: ModelRef,
    tokenizer: Mapping[str, Any],
    train: Mapping[str, Sequence[tuple[list[int], list[int]]]],
    heldout: Mapping[str, Sequence[HeldoutItem]],
    metrics: Mapping[str, str],
    max_new: Mapping[str, int],
    mixture: Mapping[str, int],
    recipe: ProxyRecipe,
    seed: int,
    max_repeats: int = 1,
    report: Report | None = None,
) -> ProxyResult:
    """One proxy fine-tune (module doc). ``tokenizer`` is a ``spec()`` (trainers.tokenizer);
    ``train`` holds each ability's training order as (token ids, loss mask) pairs;
    ``heldout``, ``metrics`` (``exact_match`` or ``loss``) and ``max_new`` (generation limit)
    say how each ability is scored."""
    torch.manual_seed(seed)
    torch.set_num_threads(recipe.threads)
    tok = tokenizer_from_spec(dict(tokenizer))
    max_length = model.spec.max_length

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = model.load(tok)
    if recipe.kind == "lora":
        net = wrap_lora(net, recipe)
    net.to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)

    # tokenized and truncated by the caller: nothing here is dropped
    encoded = select_examples(train, mixture, max_repeats)
    bs = recipe.batch_size
    steps = recipe.steps(len(encoded))
    # exactly proxy.reports reports, the last at the end: with fewer steps than reports some
    # share a step (one evaluation, reported again), so that a scheduler, which counts
    # reports, never takes a run that finished for one it stopped
    report_at = [max(1, round(steps * (k + 1) / recipe.reports)) for k in range(recipe.reports)]
    warmup = max(1, steps // 10)

    # the data order: epoch after epoch of seeded permutations, cut into batches
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * bs and encoded:
        perm = list(range(len(encoded)))
        rng.shuffle(perm)
        order.extend(perm)

    scores: dict[str, dict[str, float]] = {}
    net.train()
    for step in range(1, steps + 1):
        if encoded:
            # linear warmup, then linear decay to 10% of the peak rate
            frac = (step - 1) / steps
            lr = recipe.lr * min(1.0, step / warmup) * (1.0 - 0.9 * frac)
            for g in opt.param_groups:
                g["lr"] = lr
            batch = {
                k: v.to(device)
                for k, v in collate([encoded[i] for i in order[(step - 1) * bs : step * bs]], tok.pad_id).items()
            }
            loss = net(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        if step in report_at:
            scores = evaluate(net, tok, heldout, metrics=metrics, max_new=max_new, max_length=max_length)
            for _ in range(report_at.count(step) if report is not None else 0):
                report(step, scores)
    return ProxyResult(steps=steps, examples=len(encoded), scores=scores)
