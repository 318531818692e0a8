"""The model side's settings as plain frozen dataclasses (no pydantic: a GPU box with only torch,
transformers and peft must be able to build them).

``allocator.config`` validates the user's YAML into pydantic sections of the same fields and
hands these down (``ModelConfig.spec()``, ``PretrainConfig.recipe()``, ``ProxyConfig.recipe()``);
a test keeps the two field lists and defaults equal. ``from_dict`` rejects unknown keys, as the
YAML does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Self

from trainers.errors import TrainerError

__all__ = ["ATTENTION", "BUILTIN_FIELDS", "DTYPES", "PROXY_KINDS", "ModelSpec", "PretrainRecipe", "ProxyRecipe"]


class _Plain:
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainerError(f"{cls.__name__}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


def _positive(owner: object, *names: str) -> None:
    for name in names:
        if not getattr(owner, name) > 0:
            raise TrainerError(f"{type(owner).__name__}.{name} must be > 0, got {getattr(owner, name)!r}")


DTYPES = ("auto", "float32", "bfloat16", "float16")
ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
PROXY_KINDS = ("lora", "qlora", "full")
# the built-in decoder's shape and tokenizer: meaningless (and refused by allocator.config) next to name_or_path
BUILTIN_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "tokenizer", "vocab_size")


def _one_of(owner: object, name: str, allowed: tuple[str, ...]) -> None:
    if getattr(owner, name) not in allowed:
        raise TrainerError(
            f"{type(owner).__name__}.{name} must be one of {', '.join(allowed)}, got {getattr(owner, name)!r}"
        )


@dataclass(frozen=True)
class ModelSpec(_Plain):
    """The model every proxy starts from: a Hugging Face causal LM (``name_or_path``: a local
    ``save_pretrained`` folder or a hub id, trainers.hub) or, unset, the built-in Llama-style
    decoder of the shape below; and how text becomes its tokens."""

    name_or_path: str | None = None  # None: the built-in decoder
    revision: str | None = None  # of a hub id: a branch, tag or commit (the driver pins it to a commit)
    dtype: str = "auto"  # auto: bfloat16 on a GPU that supports it, else float32
    attn_implementation: str = "sdpa"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    max_length: int = 64  # tokens per sequence, prompt and response
    tokenizer: str = "char"  # 'char', 'bpe' or a local tokenizer folder
    vocab_size: int = 2048  # of a trained 'bpe'
    truncation: str = "right"  # 'left' keeps the end of long prompts
    trust_remote_code: bool = False  # let a model or tokenizer folder run its own code

    def __post_init__(self) -> None:
        _positive(self, "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length")
        _one_of(self, "dtype", DTYPES)
        _one_of(self, "attn_implementation", ATTENTION)
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise TrainerError(
                f"ModelSpec: hidden_size {self.hidden_size} / num_heads {self.num_heads} must be an even integer"
            )
        if self.truncation not in ("right", "left"):
            raise TrainerError(f"ModelSpec.truncation must be 'right' or 'left', got {self.truncation!r}")


@dataclass(frozen=True)
class PretrainRecipe(_Plain):
    """Brief pretraining of the built-in base on generic text (or the pool's prompts)."""

    steps: int = 1200
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    echo: float = 0.7  # fraction of generic documents whose second line quotes the first
    corpus: str = "generic"  # or 'data': the prompts of the training pool
    seed: int = 0


@dataclass(frozen=True)
class ProxyRecipe(_Plain):
    """One proxy fine-tune: ``lora`` (peft adapters on a frozen base), ``qlora`` (the same on a
    4-bit NF4 base, bitsandbytes) or ``full``, and its evaluation."""

    kind: str = "lora"
    epochs: float = 15.0  # passes over the mixture
    batch_size: int = 32
    lr: float = 6e-3
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    reports: int = 2  # evaluations per run (the last at the end)
    max_new_tokens: int = 12
    threads: int = 1  # torch threads inside a run
    lora_target_modules: tuple[str, ...] | None = None  # module names LoRA adapts; None: every linear layer
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30% slower

    def __post_init__(self) -> None:
        _one_of(self, "kind", PROXY_KINDS)
        if self.lora_target_modules is not None:
            if not self.lora_target_modules:
                raise TrainerError("ProxyRecipe.lora_target_modules must name at least one module (None: all linear)")
            object.__setattr__(self, "lora_target_modules", tuple(self.lora_target_modules))
        _positive(self, "epochs", "batch_size", "lr", "reports", "max_new_tokens", "threads")

    def steps(self, examples: int) -> int:
        """Optimizer steps on ``examples`` training examples: ``epochs`` passes in batches of
        ``batch_size``, at least one."""
        return max(1, math.ceil(examples * self.epochs / self.batch_size))
