"""The data sections: the built-in suite, user data sources and how their abilities are split
and scored (allocator.data)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from allocator.config._base import Section
from allocator.data.suite import ABILITIES

__all__ = ["DataConfig", "SourceConfig", "SuiteConfig"]


class SuiteConfig(Section):
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


class SourceConfig(Section):
    """One data source (allocator.data): a local file or folder, or a hub dataset name."""

    path: str | None = Field(None, description="local file or save_to_disk folder; relative to the config file")
    hub: str | None = Field(None, description="a Hugging Face hub dataset name (needs a network)")
    format: Literal["alpaca", "sharegpt", "messages", "prompt_completion", "fields"] | None = Field(
        None, description="default: detected from the first row's fields"
    )
    columns: dict[str, str] | None = Field(None, description="format column -> this source's column")
    tags: dict[str, Any] | None = Field(None, description="sharegpt role/content tags")
    ability: str | None = Field(None, description="the ability of every row of this source")
    ability_field: str | None = Field(None, description="the field naming each row's ability")
    ability_map: dict[str, str | None] | None = Field(None, description="raw label -> ability (null: drop)")
    split: Literal["train", "heldout"] = Field("train", description="heldout: the evaluation set of its abilities")
    empty: Literal["error", "drop"] = Field("error", description="an empty instruction or response")
    options: str | None = Field(
        None, min_length=1, description="metric choice: the field holding each row's candidate answers (a list)"
    )
    options_pattern: str | None = Field(
        None,
        min_length=1,
        description="metric choice: a regular expression whose matches in the last user turn are the row's "
        "candidate answers (of each match, the first group that matched, else the whole match; ^ and $ match "
        "at line ends)",
    )

    @model_validator(mode="after")
    def _where(self) -> SourceConfig:
        if self.options is not None and self.options_pattern is not None:
            raise ValueError("give at most one of 'options' (a field) and 'options_pattern' (parsed from the prompt)")
        if self.options_pattern is not None:
            try:
                re.compile(self.options_pattern)
            except re.error as e:
                raise ValueError(f"options_pattern: not a regular expression ({e})") from None
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of 'path' and 'hub'")
        if (self.ability is None) == (self.ability_field is None):
            raise ValueError("give exactly one of 'ability' (the whole source) and 'ability_field'")
        if self.ability_map and self.ability_field is None:
            raise ValueError("ability_map needs ability_field")
        return self

    @property
    def location(self) -> str:
        return self.path if self.path is not None else str(self.hub)


class DataConfig(Section):
    """User instruction data instead of the built-in suite (allocator.data.pools)."""

    sources: list[SourceConfig] = Field(min_length=1)
    abilities: list[str] | None = Field(None, description="use only these abilities (default: all in the data)")
    heldout_size: int | None = Field(None, gt=0, description="held-out examples per ability (default 100)")
    heldout_fraction: float | None = Field(None, gt=0, lt=1, description="instead of heldout_size")
    seed: int = Field(0, description="the held-out split and every ability's fixed order")
    max_repeats: int = Field(1, gt=0, description="passes over an ability's pool a count may take")
    max_train_per_ability: int | None = Field(
        None, gt=0, description="keep only the first N of each ability's training order (smaller, faster pools)"
    )
    unresolved: Literal["exclude", "error"] = Field("exclude", description="rows without an ability label")
    max_line_chars: int = Field(1_000_000, gt=0, description="longest JSON line accepted")
    metrics: dict[str, Literal["exact_match", "loss", "choice"]] = Field(
        default_factory=dict,
        description="ability -> metric (allocator.curves.scoring); choice ranks a row's candidate answers",
    )
    default_metric: Literal["exact_match", "loss", "choice"] = "exact_match"

    @model_validator(mode="after")
    def _heldout(self) -> DataConfig:
        if self.heldout_size is not None and self.heldout_fraction is not None:
            raise ValueError("give at most one of heldout_size and heldout_fraction")
        return self
