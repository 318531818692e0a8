"""QLoRA's 4-bit base (bitsandbytes NF4), and keeping its gradients honest on CPUs.

The base loads as NF4 with double quantization; its compute dtype is bfloat16 on a GPU that
supports it (float16 on one that does not) and float32 on a CPU.

**The CPU trap** (measured, ../shared/PLATFORM.md): on CPUs with avx512_bf16, bitsandbytes
repacks a 4-bit weight for a faster kernel the first time a no-grad forward runs in eval
mode (an evaluation pass); gradients through that layer are silently wrong afterwards (LoRA
gradients None or 80-100% off). ``protect_cpu_4bit`` switches the repacking off on every
4-bit layer before any evaluation, and ``check_4bit_gradients`` proves on the machine that
trains that gradients through a 4-bit layer after an evaluation pass equal those through its
dequantized float32 weight; where they do not (or bitsandbytes cannot run 4-bit here at
all) a QLoRA run fails with a ``TrainerError`` that says why, instead of training on wrong
gradients.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from trainers.errors import TrainerError, first_line

__all__ = ["check_4bit_gradients", "cpu_4bit_problem", "nf4_config", "protect_cpu_4bit"]


def _compute_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return torch.float32


def nf4_config(device: torch.device) -> Any:
    """transformers' bitsandbytes config of QLoRA's base on ``device``."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=_compute_dtype(device),
    )


def protect_cpu_4bit(model: Any) -> int:
    """Switch off bitsandbytes' avx512_bf16 repacking on every 4-bit layer (module doc); the
    number of layers. Call before the first evaluation."""
    import bitsandbytes as bnb

    n = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            if not hasattr(m, "support_avx512bf16_for_cpu"):
                raise TrainerError(
                    f"proxy.kind qlora: this bitsandbytes ({bnb.__version__}) has no support_avx512bf16_for_cpu "
                    "switch, so its 4-bit gradients after an evaluation cannot be kept exact on this CPU"
                )
            m.support_avx512bf16_for_cpu = False
            n += 1
    return n


def _probe(protect: bool, seed: int = 0) -> float:
    """Relative error of the input gradient through one 4-bit layer after an evaluation pass,
    against the same layer's dequantized float32 weight."""
    import bitsandbytes as bnb

    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(128, 128, generator=gen) / 11.3
    layer = bnb.nn.Linear4bit(128, 128, bias=False, quant_type="nf4", compute_dtype=torch.float32)
    layer.weight = bnb.nn.Params4bit(w.clone(), requires_grad=False, quant_type="nf4")
    layer = layer.to("cpu")  # quantizes
    if protect:
        layer.support_avx512bf16_for_cpu = False
    x = torch.randn(8, 128, generator=gen)
    layer.eval()
    with torch.no_grad():  # the evaluation pass that may repack the weight
        layer(x)
    layer.train()
    xg = x.clone().requires_grad_(True)
    layer(xg).pow(2).sum().backward()
    deq = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    xr = x.clone().requires_grad_(True)
    (xr @ deq.t()).pow(2).sum().backward()
    if xg.grad is None:
        return float("inf")
    return float((xg.grad - xr.grad).norm() / xr.grad.norm())


@functools.cache
def cpu_4bit_problem() -> str | None:
    """Why QLoRA cannot run honestly on this machine's CPU, or ``None`` when it can: bitsandbytes
    must import, quantize, and give exact gradients after an evaluation pass with the
    repacking switched off. Measured once per process (a few milliseconds)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # an import failure of a native library is not one exception type
        return f"bitsandbytes cannot be imported ({first_line(e)})"
    try:
        with torch.random.fork_rng(devices=[]):  # the probe's random layer must not move a run's seeded RNG
            err = _probe(protect=True)
    except Exception as e:
        return f"bitsandbytes cannot run a 4-bit layer on this CPU ({first_line(e)})"
    if not err < 1e-4:
        return f"bitsandbytes' 4-bit gradients on this CPU are off by {err:.0%} after an evaluation pass"
    return None


def check_4bit_gradients(device: torch.device) -> None:
    """Raise a ``TrainerError`` naming why when QLoRA cannot train honestly on ``device`` (a GPU:
    bitsandbytes must import; a CPU: ``cpu_4bit_problem``)."""
    if device.type == "cpu":
        problem = cpu_4bit_problem()
        if problem:
            raise TrainerError(f"proxy.kind qlora on this worker's CPU: {problem}")
        return
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:
        raise TrainerError(f"proxy.kind qlora: bitsandbytes cannot be imported on this worker ({e})") from None
