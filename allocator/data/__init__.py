"""1. Config -> pool: instruction data, by ability.

This module reads user data (sources, formats, abilities); ``suite`` generates the
built-in ability suite (the embedded default); ``pools`` turns either into the tokenized
pools a job allocates from (``prepare_pools``: read, split, tokenize, drop what cannot be
used), with the budget plan (allocator.mixture) a search allocates under.

``load_source`` reads one source (``allocator.data._read``), normalizes each row
to turns (``allocator.data._formats``) and resolves its ability:

- ``ability``: the whole source is one ability;
- ``ability_field``: a field of each row names it (``category``, ``class``, ...);
- ``ability_map``: raw labels -> ability names; several labels may map to one
  ability, a label mapped to ``null`` is dropped, a label absent from the map
  keeps its own name. A map key that never occurs in the data is an error (a
  typo would otherwise silently drop nothing).

A row whose ability cannot be resolved (missing or empty field) is excluded
and reported (count and first rows), or is an error, as ``unresolved`` says.
A row with an empty instruction, response or turn is an error, or a counted
drop with ``empty="drop"`` (real data has them: all 1,400 ``trec`` rows of the
T0 mixture have empty completions). Other malformed rows are always errors:
silently skipping them would change the pool.

Candidate answers for the ``choice`` metric come from the row (``options``: a field holding
a list of strings) or from the prompt (``options_pattern``: a regular expression whose
matches in the last user turn are the candidates), per source. Never from other rows'
answers: when the prompt lists its options, "pick the candidate that appears in the prompt"
would win without learning anything.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from allocator.data._formats import FORMATS, DataError, EmptyText, Turn, to_turns
from allocator.data._pool import AbilityPool, content_hash, split_pools, take
from allocator.data._read import read_rows

__all__ = [
    "FORMATS",
    "AbilityPool",
    "DataError",
    "LoadedSource",
    "Record",
    "Turn",
    "by_ability",
    "content_hash",
    "detect_format",
    "inspect_source",
    "load_source",
    "split_pools",
    "summarize",
    "take",
]

# the columns that give a format away, checked in this order on the first row
_SIGNATURES = (
    ("messages", {"messages"}),
    ("sharegpt", {"conversations"}),
    ("alpaca", {"instruction", "output"}),
    ("prompt_completion", {"prompt", "completion"}),
)


def detect_format(path: str) -> str:
    """The format whose default columns the first row has; a ``DataError`` if none fits."""
    for row, rec in read_rows(path):
        for fmt, cols in _SIGNATURES:
            if cols <= set(rec):
                return fmt
        raise DataError(
            f"{path}: row {row}: cannot tell the format from its fields ({', '.join(sorted(rec)[:10])}); "
            f"give --format, or --prompt-field and --response-field"
        )
    raise DataError(f"{path}: empty (no rows)")


@dataclass(frozen=True)
class Record:
    turns: tuple[Turn, ...]
    ability: str
    source: str
    row: int
    options: tuple[str, ...] | None = None  # candidate answers (metric choice), from a field or the prompt

    @property
    def prompt(self) -> str:
        """The first user turn (single-turn examples: the instruction)."""
        return next(t.content for t in self.turns if t.role == "user")

    @property
    def response(self) -> str:
        """The last assistant turn."""
        return next(t.content for t in reversed(self.turns) if t.role == "assistant")


@dataclass
class LoadedSource:
    records: list[Record]
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> rows
    dropped_rows: dict[str, list[int]] = field(default_factory=dict)  # reason -> first rows
    # ability -> rows dropped after its label resolved (an empty text): an ability all of whose
    # rows went is reported as such, not as absent
    dropped_abilities: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str, row: int, ability: str | None = None) -> None:
        if ability is not None:
            self.dropped_abilities[ability] += 1
        self.dropped[reason] += 1
        rows = self.dropped_rows.setdefault(reason, [])
        if len(rows) < 5:
            rows.append(row)


def load_source(
    path: str,
    *,
    format: str,
    columns: Mapping[str, str] | None = None,
    tags: Mapping[str, Any] | None = None,
    ability: str | None = None,
    ability_field: str | None = None,
    ability_map: Mapping[str, str | None] | None = None,
    unresolved: Literal["exclude", "error"] = "exclude",
    empty: Literal["error", "drop"] = "error",
    max_line_chars: int = 1_000_000,
    options: str | None = None,
    options_pattern: str | None = None,
) -> LoadedSource:
    """Read and validate one source; see the module doc for how abilities resolve and where
    a row's candidate answers come from."""
    pattern = re.compile(options_pattern, re.MULTILINE) if options_pattern else None
    if format not in FORMATS:
        raise DataError(f"{path}: unknown format {format!r} (expected one of {', '.join(FORMATS)})")
    if (ability is None) == (ability_field is None):
        raise DataError(f"{path}: give exactly one of 'ability' (the whole source) or 'ability_field'")
    if ability_map and ability_field is None:
        raise DataError(f"{path}: ability_map needs ability_field (the field whose labels it maps)")
    out = LoadedSource(records=[])
    labels_seen: set[str] = set()
    for row, rec in read_rows(path, max_line_chars=max_line_chars):
        try:
            turns = to_turns(rec, format, source=path, row=row, columns=columns, tags=tags)
        except EmptyText as e:
            if empty == "error":
                raise
            # counted against its ability where its label names one: an ability whose rows all
            # went is reported as such (allocator.data.pools), not as absent
            label = ability if ability is not None else _label_of(rec, ability_field)
            if label is not None and ability is None:
                labels_seen.add(label)
                label = ability_map.get(label, label) if ability_map is not None else label
            out.drop(f"empty '{e.field}'", row, ability=label)
            continue
        if ability is not None:
            name: str | None = ability
        else:
            assert ability_field is not None
            raw = rec.get(ability_field) if isinstance(rec, Mapping) else None
            if raw is not None and not isinstance(raw, str):
                raise DataError(
                    f"{path}: row {row}: field '{ability_field}': expected a string label, got {type(raw).__name__}"
                )
            if raw is None or not raw.strip():
                if unresolved == "error":
                    raise DataError(f"{path}: row {row}: field '{ability_field}': missing ability label")
                out.drop(f"no ability label in '{ability_field}'", row)
                continue
            labels_seen.add(raw)
            if ability_map is not None and raw in ability_map:
                name = ability_map[raw]
                if name is None:
                    out.drop(f"label '{raw}' dropped by ability_map", row)
                    continue
            else:
                name = raw
        found = None
        if options is not None:
            found = _options_field(rec, options, path, row)
        elif pattern is not None:
            found = _options_in_prompt(turns, pattern)
        out.records.append(Record(tuple(turns), name, path, row, found))
    if ability_map:
        missing = sorted(set(ability_map) - labels_seen)
        if missing:
            raise DataError(
                f"{path}: ability_map: label {missing[0]!r} does not occur in field '{ability_field}' "
                f"(labels present: {', '.join(sorted(labels_seen)[:12])})"
            )
    return out


def _label_of(rec: Any, ability_field: str | None) -> str | None:
    raw = rec.get(ability_field) if ability_field and isinstance(rec, Mapping) else None
    return raw if isinstance(raw, str) and raw.strip() else None


def _options_field(rec: Any, column: str, path: str, row: int) -> tuple[str, ...] | None:
    value = rec.get(column) if isinstance(rec, Mapping) else None
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{path}: row {row}: field '{column}': expected a list of candidate answers (strings)")
    return _distinct(value)


def _options_in_prompt(turns: list[Turn], pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    prompt = next((t.content for t in reversed(turns[:-1]) if t.role == "user"), "")
    # the first group that took part in the match (alternatives may capture in different groups)
    found = [next((g for g in m.groups() if g is not None), m.group(0)) for m in pattern.finditer(prompt)]
    return _distinct(found) or None


def _distinct(values: list[str]) -> tuple[str, ...]:
    """Stripped, non-empty, first occurrence kept: two equal candidates would tie."""
    seen: dict[str, None] = {}
    for v in values:
        if v.strip():
            seen.setdefault(v.strip(), None)
    return tuple(seen)


def by_ability(records: list[Record]) -> dict[str, list[Record]]:
    """Records grouped by ability, abilities sorted by name, records in file order."""
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(r.ability, []).append(r)
    return dict(sorted(groups.items()))


def summarize(
    loaded: LoadedSource, pools: dict[str, AbilityPool] | None = None, groups: dict[str, list[Record]] | None = None
) -> dict[str, Any]:
    """Per ability: examples, character-length quantiles and, given the split, held-out size,
    training examples and duplicates removed; dropped rows by reason."""

    def quantiles(xs: list[int]) -> dict[str, int]:
        s = sorted(xs)
        return {f"p{q}": s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))] for q in (10, 50, 90, 100)}

    abilities: dict[str, dict[str, Any]] = {}
    for a, rs in (groups if groups is not None else by_ability(loaded.records)).items():
        abilities[a] = {"examples": len(rs), "chars": quantiles([sum(len(t.content) for t in r.turns) for r in rs])}
        if pools is not None:
            p = pools.get(a)  # an ability that could not be split has none (its problem is reported)
            held, train, dups = (len(p.heldout), len(p.train), p.duplicates_removed) if p else (0, 0, 0)
            abilities[a].update(heldout=held, train=train, duplicates_removed=dups)
    return {
        "abilities": abilities,
        "dropped": dict(loaded.dropped),
        "dropped_rows": loaded.dropped_rows,
        "dropped_abilities": {a: n for a, n in sorted(loaded.dropped_abilities.items()) if a not in abilities},
        "examples": len(loaded.records),
    }


def inspect_source(
    path: str,
    fmt: str | None,
    columns: Mapping[str, str] | None,
    ability_field: str,
    empty: Literal["error", "drop"],
    heldout: int,
    seed: int,
) -> dict[str, Any]:
    """``allocator data inspect FILE``: one source's summary (``summarize``) with every
    per-ability problem in ``problems`` (an ability too small to split, labels alike), where a
    job would stop at the first. A file or row that cannot be read still raises ``DataError``."""
    from allocator.data.labels import check_labels

    fmt = fmt or detect_format(path)
    loaded = load_source(path, format=fmt, columns=columns, ability_field=ability_field, empty=empty)
    groups = by_ability(loaded.records)
    problems: dict[str, str] = {}
    pools = split_pools(groups, seed=seed, heldout_size=heldout, problems=problems)
    label_problem = check_labels(groups, {r.ability: f"{path}:row {r.row}" for r in reversed(loaded.records)})
    summary = {"file": path, "format": fmt, **summarize(loaded, pools, groups)}
    summary["problems"] = [*([label_problem] if label_problem else []), *problems.values()]
    return summary
