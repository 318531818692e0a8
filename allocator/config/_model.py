"""The model-side sections: the base, its pretraining (built-in model only), the proxy
fine-tune and the target the confirmed mixtures are for; each hands its values down as the
trainers' plain dataclass."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from allocator.config._base import Section

if TYPE_CHECKING:
    from trainers.config import ModelSpec, PretrainRecipe, ProxyRecipe

__all__ = ["ModelConfig", "PretrainConfig", "ProxyConfig", "TargetConfig"]


class ModelConfig(Section):
    """The proxies' base (trainers.config.ModelSpec): a Hugging Face causal LM
    (``name_or_path``, a local ``save_pretrained`` folder or a hub id) or, unset, a Llama-style
    decoder built from the shape fields below (never downloaded)."""

    name_or_path: str | None = Field(
        None, min_length=1, description="a local save_pretrained folder or a hub id; unset: the built-in decoder"
    )
    revision: str | None = Field(None, min_length=1, description="hub branch, tag or commit (pinned to a commit)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on a GPU that supports it, else float32"
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"] = "sdpa"
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(2, gt=0)
    num_heads: int = Field(4, gt=0)
    intermediate_size: int = Field(256, gt=0)
    max_length: int = Field(64, gt=8, description="tokens per sequence, prompt and response")
    tokenizer: str = Field("char", min_length=1, description="'char', 'bpe' or a local tokenizer folder")
    vocab_size: int = Field(2048, ge=260, description="size of the trained 'bpe' vocabulary")
    truncation: Literal["right", "left"] = Field("right", description="left keeps the end of long prompts")
    trust_remote_code: bool = Field(False, description="let a model or tokenizer folder run its own code")

    @model_validator(mode="after")
    def _heads(self) -> ModelConfig:
        from trainers.config import BUILTIN_FIELDS

        if self.name_or_path is not None:
            given = [f for f in BUILTIN_FIELDS if f in self.model_fields_set]
            if given:
                raise ValueError(
                    f"{given[0]} describes the built-in model; a model.name_or_path brings its own shape and "
                    "tokenizer (remove " + ", ".join(given) + ")"
                )
        elif self.revision is not None:
            raise ValueError("revision needs name_or_path (a hub model)")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"hidden_size / num_heads = {self.hidden_size // self.num_heads} must be even (rotary embeddings)"
            )
        return self

    def spec(self) -> ModelSpec:
        from trainers.config import ModelSpec

        return ModelSpec(**self.model_dump())

    def dump(self) -> dict[str, Any]:
        """The resolved section; a pretrained model's without the built-in model's fields (they
        do not apply, and would be refused when the config is read back)."""
        from trainers.config import BUILTIN_FIELDS

        d = self.model_dump(mode="json")
        return {k: v for k, v in d.items() if k not in BUILTIN_FIELDS} if self.name_or_path else d


class PretrainConfig(Section):
    """Brief pretraining of the base on generic text (not the abilities), cached
    (trainers.config.PretrainRecipe)."""

    steps: int = Field(1200, ge=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    echo: float = Field(0.7, ge=0, le=1, description="fraction of documents whose second line quotes the first")
    corpus: Literal["generic", "data"] = Field(
        "generic", description="generic synthetic text, or the prompts of the training pool (never responses)"
    )
    seed: int = 0

    def recipe(self) -> PretrainRecipe:
        from trainers.config import PretrainRecipe

        return PretrainRecipe(**self.model_dump())


class ProxyConfig(Section):
    """One trial: a cheap fine-tune of the base on a mixture, then per-ability evaluation
    (trainers.config.ProxyRecipe)."""

    kind: Literal["lora", "qlora", "full"] = Field(
        "lora", description="lora: adapters on the frozen base; qlora: on a 4-bit NF4 base; full: every weight"
    )
    epochs: float = Field(15.0, gt=0, description="passes over the mixture; steps = ceil(budget*epochs/batch)")
    batch_size: int = Field(32, gt=0)
    lr: float = Field(6e-3, gt=0)
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    reports: int = Field(2, gt=0, description="evaluations per trial (the last at the end), for early stopping")
    max_new_tokens: int = Field(12, gt=0)
    threads: int = Field(1, gt=0, description="torch threads inside a trial")
    lora_target_modules: list[str] | None = Field(
        None, min_length=1, description="module names LoRA adapts (e.g. [q_proj, v_proj]); default: every linear layer"
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations: less GPU memory, slower steps")

    def recipe(self) -> ProxyRecipe:
        from trainers.config import ProxyRecipe

        return ProxyRecipe(**self.model_dump())


# the built-in family at 4x the default proxy's parameters (0.34M -> 1.3M): a target worth
# confirming on, small enough for a laptop's two cores
_TARGET_SHAPE: dict[str, Any] = {"hidden_size": 256, "num_heads": 4, "intermediate_size": 512}


# its pretraining at half the proxy's lr: at 2e-3 the 256-wide base never formed what makes
# copying learnable, and no fine-tune recipe taught it copy or upper (docs/BENCHMARKS.md,
# "Why the target learns nothing"); at 1e-3 a full fine-tune learns them
_TARGET_PRETRAIN: dict[str, Any] = {"lr": 1e-3}


def _target_model() -> ModelConfig:
    return ModelConfig(**_TARGET_SHAPE)


def _target_pretrain() -> PretrainConfig:
    return PretrainConfig(**_TARGET_PRETRAIN)


class TargetConfig(Section):
    """The model the confirmed mixtures are meant for, fine-tuned data-parallel on Ray Train
    (``allocator confirm``): the built-in family at a size of its own (default: 4x the default
    proxy) or any model ``model.name_or_path`` supports, ``full`` by default. It is scored by
    the proxies' held-out sets and scorer; its own tokenizer encodes the pools."""

    model: ModelConfig = Field(default_factory=_target_model)
    pretrain: PretrainConfig = Field(
        default_factory=_target_pretrain,
        description="the built-in target's pretraining (cached): the proxy's recipe at lr 1e-3",
    )
    kind: Literal["full", "lora", "qlora"] = Field("full", description="the target fine-tune (full: every weight)")
    epochs: float = Field(3.0, gt=0, description="passes over the mixture; steps = ceil(budget*epochs/batch)")
    batch_size: int = Field(32, gt=0, description="the global batch, split over the workers")
    lr: float = Field(1e-3, gt=0)
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: list[str] | None = Field(None, min_length=1)
    gradient_checkpointing: bool = False
    reports: int = Field(1, gt=0, description="evaluations per run (the last at the end)")
    threads: int = Field(1, gt=0, description="torch threads per worker")
    workers: int = Field(2, gt=0, description="Ray Train data-parallel workers per run")
    cpus_per_worker: float = Field(
        0.95,
        gt=0,
        description="under 1 so that the workers and the trial launching them (0.01 CPU) fit on as many cores",
    )
    gpus_per_worker: float = Field(0.0, ge=0, description="> 0: the workers train on GPUs (nccl)")
    max_checkpoint_mb: float = Field(
        200.0,
        ge=0,
        description="a strategy's weights up to this size are copied to MLflow; larger: only their location",
    )

    @model_validator(mode="before")
    @classmethod
    def _on_target_defaults(cls, data: Any) -> Any:
        # a partial `model:` or `pretrain:` changes the *target's* defaults: `model: {num_heads:
        # 8}` is the default target with 8 heads, not a bare ModelConfig (the proxy's size)
        if not isinstance(data, dict):
            return data
        data = dict(data)
        model, pretrain = data.get("model"), data.get("pretrain")
        if isinstance(model, dict) and model.get("name_or_path") is not None:
            if isinstance(pretrain, dict) and pretrain:
                raise ValueError(
                    f"pretrain.{sorted(pretrain)[0]}: a target model.name_or_path is pretrained already "
                    "(remove target.pretrain)"
                )
            return data
        if isinstance(model, dict):
            data["model"] = {**_TARGET_SHAPE, **model}
        if isinstance(pretrain, dict):
            data["pretrain"] = {**_TARGET_PRETRAIN, **pretrain}
        return data

    @model_validator(mode="after")
    def _fits(self) -> TargetConfig:
        if self.batch_size < self.workers:
            raise ValueError(f"batch_size {self.batch_size} is smaller than workers {self.workers}")
        return self

    def recipe(self, max_new_tokens: int) -> ProxyRecipe:
        """The target fine-tune as the trainers run it; ``max_new_tokens`` is the proxies' (the
        same scorer)."""
        from trainers.config import ProxyRecipe

        keep = ("kind", "epochs", "batch_size", "lr", "lora_r", "lora_alpha", "lora_dropout", "reports", "threads")
        fields = {k: getattr(self, k) for k in keep}
        return ProxyRecipe(
            **fields,
            max_new_tokens=max_new_tokens,
            lora_target_modules=tuple(self.lora_target_modules) if self.lora_target_modules else None,
            gradient_checkpointing=self.gradient_checkpointing,
        )

    def proxy_section(self, max_new_tokens: int) -> ProxyConfig:
        """The fine-tune as a ``proxy:`` section (the target job's own config)."""
        r = self.recipe(max_new_tokens).to_dict()
        r["lora_target_modules"] = list(r["lora_target_modules"]) if r["lora_target_modules"] else None
        return ProxyConfig(**r)

    def dump(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        d["model"] = self.model.dump()
        if self.model.name_or_path is not None:
            d.pop("pretrain")
        return d
