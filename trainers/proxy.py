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
the proxy stands in for; ``lora_target_modules`` narrows it). ``kind="qlora"``: the same
adapters on a 4-bit NF4 base (trainers.quantization). ``kind="full"``: all parameters, for
pools where a from-scratch proxy is the honest choice (as in RegMix and DoReMi).
``gradient_checkpointing`` trades compute for activation memory. A bfloat16 or float16 run
(``model.dtype``) computes under autocast; float16 scales its loss.

Deterministic for a given seed and thread count: the same seed initialises
LoRA and orders the data in every trial, so trials differ only in the mixture.
It runs on the GPU when one is visible (Ray exposes the GPUs a trial reserved
via ``resources.gpus_per_trial``, a fraction when several trials share one, and hides the
others), else on the CPU.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trainers.config import ProxyRecipe
from trainers.errors import TrainerError
from trainers.evaluation import HeldoutItem, collate, evaluate
from trainers.models import ModelRef, torch_dtype
from trainers.tokenizer import tokenizer_from_spec

__all__ = [
    "ProxyModel",
    "ProxyResult",
    "Report",
    "evaluate_base",
    "load_proxy",
    "run_proxy",
    "select_examples",
    "wrap_lora",
]

Report = Callable[[int, dict[str, dict[str, float]], dict[str, float]], None]  # step, raw scores, speed


@dataclass(frozen=True)
class ProxyResult:
    steps: int
    examples: int
    scores: dict[str, dict[str, float]]  # ability -> {"loss", and "exact_match" or "choice" where scored so}
    tokens: int = 0  # real (not padding) tokens trained on
    train_seconds: float = 0.0  # in training steps, evaluations not counted


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
    """peft LoRA adapters on ``recipe.lora_target_modules`` of ``model`` (default every linear
    layer), which stays frozen. The adapters' weights are float32 whatever the base's dtype
    (peft's default), so that a bfloat16 or float16 base still takes exact small updates."""
    from peft import LoraConfig, get_peft_model  # heavy import, only where LoRA is used

    targets = list(recipe.lora_target_modules) if recipe.lora_target_modules else "all-linear"
    cfg = LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, cfg)
    except ValueError as e:  # target modules that the model does not have
        raise TrainerError(f"proxy.lora_target_modules: {str(e).splitlines()[0]}") from None


@dataclass
class ProxyModel:
    """A model loaded as a proxy trains it: ``net`` on ``device``, its compute ``dtype``."""

    net: Any
    device: torch.device
    dtype: torch.dtype

    def autocast(self) -> Any:
        """Mixed precision for a bfloat16 or float16 run, nothing for float32."""
        enabled = self.dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=enabled)


def load_proxy(
    model: ModelRef, tok: Any, recipe: ProxyRecipe, *, adapters: bool = True, device: torch.device | None = None
) -> ProxyModel:
    """The model of a proxy run (``adapters=False``: the untrained base as such a run sees it,
    quantized for ``qlora``), on the GPU when one is visible (Ray exposes the GPUs a trial
    reserved and hides the others), else the CPU; ``device`` says where when the caller knows.

    ``lora``: the base in the run's dtype, float32 adapters. ``qlora``: an NF4 base
    (trainers.quantization; exact CPU gradients checked first), float32 adapters.
    ``full``: float32 weights (the optimizer's master copy), computed in the run's dtype."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch_dtype(model.spec.dtype, device)
    if recipe.kind == "qlora":
        from trainers.quantization import check_4bit_gradients, nf4_config, protect_cpu_4bit

        check_4bit_gradients(device)
        net = model.load(tok, dtype=dtype, quantization=nf4_config(device), device=device)
        if device.type == "cpu":
            protect_cpu_4bit(net)  # before any evaluation pass (module doc of trainers.quantization)
        from peft import prepare_model_for_kbit_training

        # the base too (adapters=False): its norms and embeddings in float32, as the runs see them
        net = prepare_model_for_kbit_training(
            net,
            use_gradient_checkpointing=adapters and recipe.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    else:
        net = model.load(tok, dtype=torch.float32 if recipe.kind == "full" else dtype, device=device)
        if adapters and recipe.gradient_checkpointing:
            net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if adapters and recipe.kind in ("lora", "qlora"):
        net = wrap_lora(net, recipe)
    return ProxyModel(net, device, dtype)


def _data_parallel() -> tuple[int, int]:
    """``(world size, rank)`` of an initialized process group, else ``(1, 0)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def _average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """Every rank's gradients replaced by their mean over the ranks (what DDP does, spelled out:
    a model that is peft-wrapped, quantized or tiny needs no DDP wrapper this way). A parameter
    without a gradient on this rank (no token reached it) counts as zeros. One all-reduce of
    all gradients flattened together per dtype, as DDP's buckets do: one collective per
    parameter costs a round trip each, which dominates a small model's step."""
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)  # type: ignore[union-attr]
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def evaluate_base(
    *,
    model: ModelRef,
    tokenizer: Mapping[str, Any],
    heldout: Mapping[str, Sequence[HeldoutItem]],
    metrics: Mapping[str, str],
    max_new: Mapping[str, int],
    recipe: ProxyRecipe,
    threads: int | None = None,
    device: torch.device | None = None,
) -> dict[str, dict[str, float]]:
    """The untrained base's raw scores, loaded as the proxy runs of ``recipe`` load it (the same
    device, dtype and quantization): the 0 of every normalized score. Named LoRA target
    modules are tried on it too, so that targets the model lacks are an error here, once, and
    not in every trial."""
    prev = torch.get_num_threads()
    torch.set_num_threads(threads or recipe.threads)
    try:
        tok = tokenizer_from_spec(dict(tokenizer))
        pm = load_proxy(model, tok, recipe, adapters=False, device=device)
        with pm.autocast():
            scores = evaluate(pm.net, tok, heldout, metrics=metrics, max_new=max_new, max_length=model.spec.max_length)
        # the default, every linear layer, fits any model: only named targets need the check
        # (which imports peft, seconds a process)
        if recipe.kind != "full" and recipe.lora_target_modules is not None:
            wrap_lora(pm.net, recipe)
        return scores
    finally:
        torch.set_num_threads(prev)


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
    checkpoint: Callable[[Any], None] | None = None,
) -> ProxyResult:
    """One proxy fine-tune (module doc). ``tokenizer`` is a ``spec()`` (trainers.tokenizer);
    ``train`` holds each ability's training order as (token ids, loss mask) pairs;
    ``heldout``, ``metrics`` (``exact_match``, ``choice`` or ``loss``) and ``max_new``
    (generation limit) say how each ability is scored. ``report(step, scores, perf)`` gets
    each evaluation and the speed so far (``tokens_per_s``: real tokens, not padding, per
    second of training; ``train_seconds`` and ``eval_seconds`` so far; on a GPU
    ``peak_gpu_memory_mb``, allocated by tensors, and ``peak_gpu_reserved_mb``, held by
    torch's caching allocator, loading included).
    ``checkpoint(net)`` gets the trained model at the end (on every rank of a data-parallel run:
    the caller's rank 0 saves it).

    **Data-parallel** when ``torch.distributed`` is initialized (a target fine-tune on Ray
    Train's workers, say): every rank builds the same model from the same seed and the same
    data order, takes its share of each global batch (rows ``rank::world``), and averages
    its gradients with the others' before the optimizer step, so the weights stay identical
    on every rank. Rank 0 alone evaluates; every rank reports (the others with empty scores),
    as a collective report expects. One process: exactly as before."""
    world, rank = _data_parallel()
    if world > 1 and recipe.batch_size < world:
        raise TrainerError(f"batch_size {recipe.batch_size} is smaller than the {world} data-parallel workers")
    torch.manual_seed(seed)
    torch.set_num_threads(recipe.threads)
    tok = tokenizer_from_spec(dict(tokenizer))
    max_length = model.spec.max_length

    if torch.cuda.is_available():  # the peak includes loading (quantizing, a full run's float32 copy)
        torch.cuda.reset_peak_memory_stats()
    pm = load_proxy(model, tok, recipe)
    net, device = pm.net, pm.device
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    # float16 needs loss scaling, or small gradients underflow to 0; bfloat16 and float32 do not
    scaler = torch.amp.GradScaler(device.type, enabled=pm.dtype == torch.float16)

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
    tokens, seconds, eval_seconds = 0, 0.0, 0.0
    net.train()
    for step in range(1, steps + 1):
        if encoded:
            t0 = time.perf_counter()
            # linear warmup, then linear decay to 10% of the peak rate
            frac = (step - 1) / steps
            lr = recipe.lr * min(1.0, step / warmup) * (1.0 - 0.9 * frac)
            for g in opt.param_groups:
                g["lr"] = lr
            rows = order[(step - 1) * bs : step * bs][rank::world]  # this rank's share of the global batch
            batch = {k: v.to(device) for k, v in collate([encoded[i] for i in rows], tok.pad_id).items()}
            with pm.autocast():
                loss = net(**batch).loss
            # diverged: every later step and score would be NaN. float16 is exempt: its loss
            # scaler skips a step whose gradients overflow and recovers
            if not scaler.is_enabled() and not torch.isfinite(loss.detach()).item():
                raise FloatingPointError(
                    f"training loss is {loss.item()} at step {step} of {steps} (lr {recipe.lr:g} too high?)"
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if world > 1:
                _average_gradients(params, world)
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            scaler.step(opt)
            scaler.update()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds += time.perf_counter() - t0
            tokens += int(batch["attention_mask"].sum())
        if step in report_at and rank == 0:
            t0 = time.perf_counter()
            with pm.autocast():
                scores = evaluate(net, tok, heldout, metrics=metrics, max_new=max_new, max_length=max_length)
            eval_seconds += time.perf_counter() - t0
        if step in report_at:
            # the seconds so far in training steps and in evaluations: what a trial spends on its
            # work, apart from loading its model and data (experiments/load.py's overhead)
            perf = {
                "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
                "train_seconds": seconds,
                "eval_seconds": eval_seconds,
            }
            if device.type == "cuda":  # allocated by tensors; reserved by the caching allocator (what sharing needs)
                perf["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
                perf["peak_gpu_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
            for _ in range(report_at.count(step) if report is not None else 0):
                report(step, scores, perf)
    if checkpoint is not None:
        checkpoint(net)
    return ProxyResult(steps=steps, examples=len(encoded), scores=scores, tokens=tokens, train_seconds=seconds)
