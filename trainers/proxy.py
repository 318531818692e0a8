"""The proxy fine-tune: one trial of the search, written out as one plain loop.

Given the base weights, a mixture (ability -> example count) and the pool, it
takes the first n examples of each ability's fixed order (nested sampling),
fine-tunes for ``ceil(budget * epochs / batch_size)`` steps with the loss on
response tokens only, and evaluates every ability on its held-out set
``reports`` times (the last at the end), handing each evaluation to
``report`` so that a scheduler may stop a bad trial early.

``kind="lora"``: peft LoRA on every linear layer of the frozen base (the recipe
the proxy stands in for). ``kind="full"``: all parameters, for pools where a
from-scratch proxy is the honest choice (as in RegMix and DoReMi).

Deterministic for a given seed and thread count: the same seed initialises
LoRA and orders the data in every trial, so trials differ only in the mixture.
It runs on the GPU when one is visible (Ray exposes the GPUs a trial reserved
via ``resources.gpus_per_trial`` and hides them otherwise), else on the CPU.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trainers.base_model import load_model
from trainers.evaluate import collate, evaluate
from trainers.tokenizer import CharTokenizer, truncate

__all__ = ["ProxyResult", "run_proxy", "select_examples"]

Report = Callable[[int, dict[str, dict[str, float]], int], None]  # step, scores, examples dropped


@dataclass(frozen=True)
class ProxyResult:
    steps: int
    dropped: int  # examples that truncation left without a loss token
    scores: dict[str, dict[str, float]]  # ability -> {"exact_match", "loss"}


def select_examples(pool: Mapping[str, Sequence[Any]], mixture: Mapping[str, int]) -> list[Any]:
    """The first ``mixture[a]`` examples of each ability's fixed order."""
    chosen: list[Any] = []
    for ability, n in mixture.items():
        available = pool[ability]
        if n > len(available):
            raise ValueError(f"{ability}: {n} examples requested, the pool has {len(available)}")
        chosen.extend(available[:n])
    return chosen


def _wrap_lora(model: Any, proxy: Mapping[str, Any]) -> Any:
    from peft import LoraConfig, get_peft_model  # heavy import, only where LoRA is used

    cfg = LoraConfig(
        r=proxy["lora_r"],
        lora_alpha=proxy["lora_alpha"],
        lora_dropout=proxy["lora_dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, cfg)


def run_proxy(
    *,
    base_weights: bytes,
    model_cfg: Mapping[str, Any],
    proxy: Mapping[str, Any],
    pool: Mapping[str, Sequence[Any]],
    heldout: Mapping[str, Sequence[Any]],
    mixture: Mapping[str, int],
    seed: int,
    report: Report | None = None,
) -> ProxyResult:
    torch.manual_seed(seed)
    torch.set_num_threads(proxy["threads"])
    tok = CharTokenizer()
    max_length = model_cfg["max_length"]

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(dict(model_cfg), base_weights)
    if proxy["kind"] == "lora":
        model = _wrap_lora(model, proxy)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=proxy["lr"], weight_decay=0.0)

    encoded = []
    dropped = 0
    for e in select_examples(pool, mixture):
        cut = truncate(*tok.encode_example(e.instruction, e.response), max_length)
        if cut is None:  # truncation left nothing to learn from: counted, never trained on silently
            dropped += 1
            continue
        encoded.append(cut)

    bs = proxy["batch_size"]
    budget = sum(mixture.values())
    if budget > 0 and not encoded:
        raise ValueError(f"all {budget} examples were truncated away (model.max_length {max_length} is too short)")
    steps = max(1, math.ceil(budget * proxy["epochs"] / bs))
    report_at = sorted({max(1, round(steps * (k + 1) / proxy["reports"])) for k in range(proxy["reports"])})
    warmup = max(1, steps // 10)

    # the data order: epoch after epoch of seeded permutations, cut into batches
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * bs and encoded:
        perm = list(range(len(encoded)))
        rng.shuffle(perm)
        order.extend(perm)

    scores: dict[str, dict[str, float]] = {}
    model.train()
    for step in range(1, steps + 1):
        if encoded:
            # linear warmup, then linear decay to 10% of the peak rate
            frac = (step - 1) / steps
            lr = proxy["lr"] * min(1.0, step / warmup) * (1.0 - 0.9 * frac)
            for g in opt.param_groups:
                g["lr"] = lr
            batch = {
                k: v.to(device) for k, v in collate([encoded[i] for i in order[(step - 1) * bs : step * bs]]).items()
            }
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        if step in report_at:
            scores = evaluate(model, dict(heldout), max_new_tokens=proxy["max_new_tokens"], max_length=max_length)
            if report is not None:
                report(step, scores, dropped)
    return ProxyResult(steps=steps, dropped=dropped, scores=scores)
