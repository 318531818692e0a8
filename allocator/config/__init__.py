"""The typed configuration of every job (optimize, study, confirm).

Every section rejects unknown keys and names the offending field. The defaults
*are* the embedded default run (``allocator optimize`` with no arguments);
``experiments/default.yaml`` spells them out and a test keeps the two equal.
The model-side sections hand their values down as the trainers' own plain
dataclasses (``ModelConfig.spec()``, ``PretrainConfig.recipe()``,
``ProxyConfig.recipe()``): ``trainers`` has no pydantic, and a test keeps the
fields and defaults of both equal.

The sections live in private modules by pipeline stage (``_data``: suite and user
data; ``_model``: the base, its pretraining, the proxy); this module holds the search,
the study, resources, the top-level ``OptimizeConfig`` and reading YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from allocator.config._base import Section
from allocator.config._data import DataConfig, SourceConfig, SuiteConfig
from allocator.config._model import ModelConfig, PretrainConfig, ProxyConfig, TargetConfig
from allocator.errors import UserError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimizeConfig",
    "PretrainConfig",
    "ProxyConfig",
    "RayConfig",
    "ResourcesConfig",
    "SearchConfig",
    "SourceConfig",
    "StudyConfig",
    "SuiteConfig",
    "TargetConfig",
    "TrackingConfig",
    "load_config",
    "merge",
    "resolve_config",
]


class SearchConfig(Section):
    """Ray Tune + Optuna over the mixture space (see allocator.mixture)."""

    sampler: Literal["tpe", "random", "gp", "cmaes", "growth"] = Field(
        "tpe",
        description="Optuna's TPE, random, GP or CMA-ES sampler, or allocator's growth-curve model "
        "(allocator.search.sampler.GrowthCurveSampler)",
    )
    n_startup_trials: int = Field(
        4, ge=1, description="finished trials (the uniform baseline included) before the sampler models the space"
    )
    kappa: float = Field(1.0, ge=0, description="growth: standard deviations of the upper bound it maximizes")
    explore_every: int = Field(
        3,
        ge=0,
        description="growth: every n-th model proposal doubles the largest tried volumes of abilities whose "
        "untried range may pay (0: never)",
    )
    scheduler: Literal["none", "asha"] = Field(
        "none", description="asha: stop trials early at the proxy's intermediate evaluations (proxy.reports >= 2)"
    )
    grace_period: int = Field(1, ge=1, description="asha: evaluations a trial runs before it can be stopped")
    reduction_factor: float = Field(2.0, ge=2, description="asha: 1 in reduction_factor trials goes on at each rung")
    warm_start: str | None = Field(
        None,
        description="a study's or optimization's result JSON or MLflow run id to start from "
        "(allocator.search.warmstart)",
    )
    multi_objective: bool = Field(
        False,
        description="search (objective, examples used) together: a mixture may use less than the budget, down to "
        "min_budget_fraction of it; the result holds the Pareto front",
    )
    min_budget_fraction: float = Field(0.1, gt=0, le=1, description="multi_objective: the smallest share of the budget")
    minimum: dict[str, int] | None = Field(None, description="examples per ability every searched mixture keeps")
    maximum: dict[str, int] | None = Field(None, description="examples per ability no searched mixture exceeds")
    floor: float | None = Field(
        None,
        ge=0,
        description="a mixture with an ability scoring more than this below the uniform mixture's score "
        "(normalized, e.g. 0.01 = 1 point) violates the floor and is never recommended",
    )

    @model_validator(mode="after")
    def _bounds(self) -> SearchConfig:
        for name, d in (("minimum", self.minimum), ("maximum", self.maximum)):
            bad = [a for a, n in (d or {}).items() if n < 0]
            if bad:
                raise ValueError(f"{name}: the count of {bad[0]!r} must be >= 0, got {d[bad[0]]}")  # type: ignore[index]
        for a, lo in (self.minimum or {}).items():
            hi = (self.maximum or {}).get(a)
            if hi is not None and lo > hi:
                raise ValueError(f"minimum of {a!r} ({lo}) exceeds its maximum ({hi})")
        if self.multi_objective and self.sampler in ("growth", "cmaes"):
            raise ValueError(f"multi_objective needs a multi-objective sampler (tpe, gp or random), not {self.sampler}")
        if self.multi_objective and self.scheduler != "none":
            raise ValueError("multi_objective cannot stop trials early (scheduler must be none)")
        return self

    max_concurrent_trials: int | None = Field(None, gt=0, description="default: as many as the CPUs allow")


class StudyConfig(Section):
    """``allocator study``: proxy runs over a volume grid per ability (allocator.studies.study)."""

    volumes: list[int] = Field(
        default_factory=lambda: [0, 4, 16, 64, 256, 1024],
        min_length=2,
        description="examples per ability, capped by each pool; 0 is the untrained base",
    )
    designs: list[Literal["joint", "isolated"]] = Field(
        default_factory=lambda: ["joint", "isolated"],
        min_length=1,
        description="joint: every ability at v; isolated: one ability at v, the others at 0",
    )
    seeds: int = Field(3, gt=0, description="proxy runs per point (training seeds seed, seed+1, ...)")
    models: list[Literal["loglin", "exp", "power", "hill"]] = Field(
        default_factory=lambda: ["loglin", "exp", "power"], min_length=1, description="growth models tried (AICc)"
    )
    bootstrap: int = Field(200, ge=10, description="bootstrap draws for bands and intervals")
    min_gain: float = Field(0.02, ge=0, description="a smaller gain over the grid is 'resistant'")

    @model_validator(mode="after")
    def _grid(self) -> StudyConfig:
        if any(v < 0 for v in self.volumes) or sorted(set(self.volumes)) != self.volumes:
            raise ValueError(f"volumes must be distinct, >= 0 and increasing, got {self.volumes}")
        if len(set(self.designs)) != len(self.designs) or len(set(self.models)) != len(self.models):
            raise ValueError("designs and models must be distinct")
        return self


class ResourcesConfig(Section):
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    max_failures: int = Field(
        0,
        ge=0,
        description="times a failed trial is retried from scratch (Tune's FailureConfig; a worker or node lost): "
        "a retried trial stays one Optuna trial and one MLflow run, its failed attempts recorded on the run",
    )


class RayConfig(Section):
    address: str | None = Field(None, description="join this cluster; default: start Ray locally")
    num_cpus: int | None = Field(None, gt=0, description="CPUs of a local Ray; default: all")


class TrackingConfig(Section):
    uri: str | None = Field(None, description="MLflow tracking URI; default: sqlite:///<cwd>/mlflow.db")
    experiment: str = Field("allocator", min_length=1, max_length=500)  # MLflow's limit on experiment names


class OptimizeConfig(Section):
    """``allocator optimize``: search per-ability example counts under a total budget."""

    seed: int = 0
    budget: int = Field(4000, gt=0, description="total training examples (or tokens) across abilities")
    budget_unit: Literal["examples", "tokens"] = "examples"
    trials: int = Field(8, gt=0, description="searched mixtures (the uniform baseline is extra)")
    weights: dict[str, float] | None = Field(None, description="objective weight per ability; default: equal")
    storage_path: str = Field("allocator_runs", min_length=1, description="Ray Tune results")
    suite: SuiteConfig = Field(default_factory=SuiteConfig)
    data: DataConfig | None = Field(None, description="user data; when given, the suite is not used")
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    target: TargetConfig | None = Field(
        None, description="what `allocator confirm` confirms on (Ray Train); unset: the proxy only"
    )

    @model_validator(mode="after")
    def _weights(self) -> OptimizeConfig:
        if self.weights is not None:
            for a, w in self.weights.items():
                if self.data is None and a not in self.suite.abilities:
                    raise ValueError(f"weights names ability {a!r}, which is not in suite.abilities")
                if w < 0:
                    raise ValueError(f"weight of {a!r} must be >= 0, got {w}")
            if self.data is None and sum(self.weights.get(a, 0.0) for a in self.suite.abilities) <= 0:
                raise ValueError("weights must not all be zero")
        return self

    @model_validator(mode="after")
    def _pretrained(self) -> OptimizeConfig:
        if self.model.name_or_path is not None and self.pretrain.model_fields_set:
            raise ValueError(
                f"pretrain.{sorted(self.pretrain.model_fields_set)[0]}: the pretrain step builds the built-in model; "
                "a model.name_or_path is pretrained already (remove the pretrain section)"
            )
        return self

    @model_validator(mode="after")
    def _search_bounds(self) -> OptimizeConfig:
        if (self.search.minimum or self.search.maximum) and self.budget_unit != "examples":
            raise ValueError("search.minimum and search.maximum count examples: they need budget_unit examples")
        return self

    @model_validator(mode="after")
    def _scheduler(self) -> OptimizeConfig:
        if self.search.scheduler == "asha" and self.search.grace_period >= self.proxy.reports:
            raise ValueError(
                f"search.scheduler asha stops trials between the proxy's evaluations: proxy.reports "
                f"({self.proxy.reports}) must exceed search.grace_period ({self.search.grace_period})"
            )
        return self

    def objective_weights(self, abilities: list[str]) -> dict[str, float]:
        """Weights of the pool's abilities; a weight naming an absent ability is a UserError."""
        if self.weights is None:
            return {a: 1.0 for a in abilities}
        for a in self.weights:
            if a not in abilities:
                raise UserError(f"weights: ability {a!r} is not in the pool (abilities: {', '.join(abilities)})")
        out = {a: self.weights.get(a, 0.0) for a in abilities}
        if sum(out.values()) <= 0:
            raise UserError("weights: must not all be zero")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The resolved config (what every result and parent run stores); read back by
        ``load_config``, it gives this config again."""
        d = self.model_dump(mode="json")
        d["model"] = self.model.dump()
        if self.model.name_or_path is not None:
            d.pop("pretrain")
        if self.target is not None:
            d["target"] = self.target.dump()
        return d

    def for_target(self) -> OptimizeConfig:
        """This config with the target in the place of the proxy: its model, pretraining and
        fine-tune (the proxies' generation limit: the same scorer), and its workers' resources
        (what scoring its base on a worker reserves)."""
        t = self.target
        assert t is not None, "a target: section"
        update: dict[str, Any] = {
            "model": t.model,
            "proxy": t.proxy_section(self.proxy.max_new_tokens),
            "resources": ResourcesConfig(cpus_per_trial=t.cpus_per_worker, gpus_per_trial=t.gpus_per_worker),
            "target": None,
        }
        if t.model.name_or_path is None:
            update["pretrain"] = t.pretrain
        return self.model_copy(update=update)


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


def _resolve_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Data source paths, a tokenizer folder and a warm-start file in a config file are
    relative to that file."""
    section = data.get("data")
    if isinstance(section, dict) and isinstance(section.get("sources"), list):
        sources = []
        for src in section["sources"]:
            if isinstance(src, dict) and isinstance(src.get("path"), str) and not Path(src["path"]).is_absolute():
                src = {**src, "path": str(folder / src["path"])}
            sources.append(src)
        data = {**data, "data": {**section, "sources": sources}}
    if isinstance(data.get("model"), dict):
        data = {**data, "model": _model_paths(data["model"], folder)}
    target = data.get("target")
    if isinstance(target, dict) and isinstance(target.get("model"), dict):
        data = {**data, "target": {**target, "model": _model_paths(target["model"], folder)}}
    search = data.get("search")
    if isinstance(search, dict) and isinstance(search.get("warm_start"), str):
        warm = search["warm_start"]  # a file next to the config; anything else is a run id
        if not Path(warm).is_absolute() and (folder / warm).exists():
            data = {**data, "search": {**search, "warm_start": str(folder / warm)}}
    return data


def _model_paths(model: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A model section's tokenizer folder and model folder, relative to the config file."""
    tok = model.get("tokenizer")
    if isinstance(tok, str) and tok not in ("char", "bpe") and not Path(tok).is_absolute():
        model = {**model, "tokenizer": str(folder / tok)}
    where = model.get("name_or_path")  # a folder next to the config; anything else is a hub id
    if isinstance(where, str) and not Path(where).is_absolute() and (folder / where).is_dir():
        model = {**model, "name_or_path": str(folder / where)}
    return model


MAX_CONFIG_BYTES = 1 << 20


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
        if p.stat().st_size > MAX_CONFIG_BYTES:  # YAML parses slowly: a huge one is a mistake, not a config
            mb = p.stat().st_size / 2**20
            raise UserError(f"{p}: {mb:.1f} MB; a config is a few KB (data belongs in files under data.sources)")
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
        data = _resolve_paths(loaded, p.parent)
    if overrides:
        data = merge(data, overrides)
        if path is None:
            source = "options"
    try:
        return OptimizeConfig.model_validate(data)
    except ValidationError as e:
        raise UserError(_format_error(source, e)) from None


def resolve_config(config: OptimizeConfig | dict | str | Path | None, overrides: dict[str, Any]) -> OptimizeConfig:
    """What a job's ``config`` argument names (an ``OptimizeConfig``, a dict of config keys, a
    YAML path, or ``None`` for the embedded default) with the keyword ``overrides`` applied
    to its top-level keys (nested sections merged), validated."""
    if isinstance(config, OptimizeConfig):
        # what was set, not every default: a field left at its default stays unset (so that,
        # e.g., a model.name_or_path override is not refused for the built-in shape's defaults)
        given = config.model_dump(mode="json", exclude_unset=True)
        return load_config(None, merge(given, overrides)) if overrides else config
    if isinstance(config, dict):
        return load_config(None, merge(config, overrides))
    return load_config(config, overrides)
