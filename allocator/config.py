"""The typed configuration of an optimization.

Every section rejects unknown keys and names the offending field. The defaults
*are* the embedded default run (``allocator optimize`` with no arguments);
``experiments/default.yaml`` spells them out and a test keeps the two equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from allocator.errors import UserError
from allocator.suite import ABILITIES

__all__ = [
    "ModelConfig",
    "OptimizeConfig",
    "PretrainConfig",
    "ProxyConfig",
    "RayConfig",
    "ResourcesConfig",
    "SearchConfig",
    "SuiteConfig",
    "TrackingConfig",
    "load_config",
    "merge",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SuiteConfig(_Section):
    """The built-in ability suite (the embedded default data)."""

    abilities: list[str] = Field(default_factory=lambda: list(ABILITIES), min_length=2)
    pool_size: int = Field(2000, gt=0, description="training examples generated per ability (at most)")
    heldout_size: int = Field(48, gt=0, description="held-out examples per ability")
    seed: int = 0

    @model_validator(mode="after")
    def _known(self) -> SuiteConfig:
        for a in self.abilities:
            if a not in ABILITIES:
                raise ValueError(f"unknown ability {a!r}; built-in abilities: {', '.join(ABILITIES)}")
        if len(set(self.abilities)) != len(self.abilities):
            raise ValueError("abilities must be distinct")
        return self


class ModelConfig(_Section):
    """A Llama-style decoder built from this config, character vocabulary."""

    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(2, gt=0)
    num_heads: int = Field(4, gt=0)
    intermediate_size: int = Field(256, gt=0)
    max_length: int = Field(64, gt=8, description="tokens per sequence, prompt and response")

    @model_validator(mode="after")
    def _heads(self) -> ModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"hidden_size / num_heads = {self.hidden_size // self.num_heads} must be even (rotary embeddings)"
            )
        return self


class PretrainConfig(_Section):
    """Brief pretraining of the base on generic text (not the abilities), cached."""

    steps: int = Field(1200, ge=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    echo: float = Field(0.7, ge=0, le=1, description="fraction of documents whose second line quotes the first")
    seed: int = 0


class ProxyConfig(_Section):
    """One trial: a cheap fine-tune of the base on a mixture, then per-ability evaluation."""

    kind: Literal["lora", "full"] = "lora"
    epochs: float = Field(15.0, gt=0, description="passes over the mixture; steps = ceil(budget*epochs/batch)")
    batch_size: int = Field(32, gt=0)
    lr: float = Field(6e-3, gt=0)
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    reports: int = Field(2, gt=0, description="evaluations per trial (the last at the end), for early stopping")
    max_new_tokens: int = Field(12, gt=0)
    threads: int = Field(1, gt=0, description="torch threads inside a trial")


class SearchConfig(_Section):
    """Ray Tune + Optuna over the mixture space (see allocator.mixtures)."""

    sampler: Literal["tpe", "random"] = "tpe"
    n_startup_trials: int = Field(4, ge=1, description="TPE's random trials before it models the space")
    max_concurrent_trials: int | None = Field(None, gt=0, description="default: as many as the CPUs allow")


class ResourcesConfig(_Section):
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)


class RayConfig(_Section):
    address: str | None = Field(None, description="join this cluster; default: start Ray locally")
    num_cpus: int | None = Field(None, gt=0, description="CPUs of a local Ray; default: all")


class TrackingConfig(_Section):
    uri: str | None = Field(None, description="MLflow tracking URI; default: sqlite:///<cwd>/mlflow.db")
    experiment: str = Field("allocator", min_length=1)


class OptimizeConfig(_Section):
    """``allocator optimize``: search per-ability example counts under a total budget."""

    seed: int = 0
    budget: int = Field(4000, gt=0, description="total training examples across abilities")
    trials: int = Field(8, gt=0, description="searched mixtures (the uniform baseline is extra)")
    weights: dict[str, float] | None = Field(None, description="objective weight per ability; default: equal")
    storage_path: str = Field("allocator_runs", min_length=1, description="Ray Tune results")
    suite: SuiteConfig = Field(default_factory=SuiteConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _weights(self) -> OptimizeConfig:
        if self.weights is not None:
            for a, w in self.weights.items():
                if a not in self.suite.abilities:
                    raise ValueError(f"weights names ability {a!r}, which is not in suite.abilities")
                if w < 0:
                    raise ValueError(f"weight of {a!r} must be >= 0, got {w}")
            if sum(self.weights.get(a, 0.0) for a in self.suite.abilities) <= 0:
                raise ValueError("weights must not all be zero")
        return self

    def objective_weights(self) -> dict[str, float]:
        if self.weights is None:
            return {a: 1.0 for a in self.suite.abilities}
        return {a: self.weights.get(a, 0.0) for a in self.suite.abilities}

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _format_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] != "missing" and "input" in first and not isinstance(first["input"], dict):
        msg += f" (got {first['input']!r})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied, nested sections merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> OptimizeConfig:
    """Read a YAML config (``None``: the embedded default), apply overrides, validate.

    Raises ``UserError`` with a one-line message naming the file and the field.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise UserError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise UserError(f"{p}: not UTF-8 text (byte {e.start})") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise UserError(f"{p}: {where}invalid YAML: {problem}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{p}: expected a mapping of config keys at the top level, got {type(loaded).__name__}")
        data = loaded
    if overrides:
        data = merge(data, overrides)
        if path is None:
            source = "options"
    try:
        return OptimizeConfig.model_validate(data)
    except ValidationError as e:
        raise UserError(_format_error(source, e)) from None
