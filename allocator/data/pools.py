"""The ability pools an optimization reads: from the built-in suite or user data, tokenized once.

``load_records(cfg)`` gives each ability's training order and held-out set as
records with ``turns`` (the suite, or ``cfg.data``'s sources through
``allocator.data``). ``encode_pools`` tokenizes them with the model's tokenizer
and template, applies the truncation rule, and drops what cannot be used:

- a training example that truncation leaves with no loss token is removed from
  the ability's order (before any trial, so counts and budgets are exact) and
  counted in the summary as ``truncated_away``;
- a held-out example is ``unscorable`` when truncation cuts into its last
  assistant turn (the reference): it is left out of evaluation and counted; so is one
  of an ability scored by ``choice`` without its reference among two or more candidate
  answers (each encoded as the last assistant turn, truncated by the same rule).

The driver does this once (``prepare_pools``: read, split, build or load the
tokenizer, encode); trials receive token ids, never files. The summary
(``Pools.summary``) is what ``allocator data inspect --config`` prints and what
the MLflow parent run of every job stores as ``pool.json``. ``Pools.plan`` is the
budget plan (allocator.mixture) a search allocates under.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from allocator.config import OptimizeConfig
from allocator.data import DataError, Turn, by_ability, content_hash, detect_format, load_source, split_pools
from allocator.data.labels import ability_key, check_labels
from allocator.data.suite import build_suite
from allocator.errors import UserError
from allocator.mixture.plan import BudgetPlan
from trainers.errors import TrainerError
from trainers.evaluation import HeldoutItem
from trainers.tokenizer import encode_many, prompt_length, truncate

if TYPE_CHECKING:
    from trainers.config import ModelSpec

__all__ = ["Pools", "RawPools", "corpus", "encode_pools", "load_records", "prepare_pools", "trainer_errors"]

DEFAULT_HELDOUT = 100


@dataclass
class RawPools:
    """Records per ability before tokenization: training order and held-out set."""

    train: dict[str, list[Any]]
    heldout: dict[str, list[Any]]
    metrics: dict[str, str]
    info: dict[str, dict[str, Any]]  # ability -> examples, duplicates_removed
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows, at loading
    dropped_rows: dict[str, list[str]] = field(default_factory=dict)  # reason -> first "file:row"
    sources: list[str] = field(default_factory=list)
    dropped_abilities: dict[str, int] = field(default_factory=dict)  # an ability all of whose rows were dropped


def _suite_records(cfg: OptimizeConfig) -> RawPools:
    s = cfg.suite
    suite = build_suite(s.abilities, seed=s.seed, pool_size=s.pool_size, heldout_size=s.heldout_size)
    return RawPools(
        train={a: list(x) for a, x in suite.train.items()},
        heldout={a: list(x) for a, x in suite.heldout.items()},
        metrics=dict.fromkeys(suite.abilities, "exact_match"),
        info={
            a: {"examples": len(suite.train[a]) + len(suite.heldout[a]), "duplicates_removed": 0} for a in suite.train
        },
        sources=["built-in suite"],
    )


def _data_records(cfg: OptimizeConfig, problems: list[str] | None = None) -> RawPools:
    """``cfg.data``'s pool. A problem of an ability or of the labels is a ``DataError`` at the
    first, or, given ``problems`` (``data inspect --config``), one line there for each
    (a file or row that cannot be read still raises)."""
    data = cfg.data
    assert data is not None

    def problem(message: str) -> None:
        if problems is None:
            raise DataError(message)
        problems.append(message)

    train, heldout = [], []
    dropped: Counter[str] = Counter()
    dropped_rows: dict[str, list[str]] = {}
    lost: Counter[str] = Counter()  # ability -> rows dropped for an empty text
    for src in data.sources:
        where = src.location
        fmt = src.format or detect_format(where)
        loaded = load_source(
            where,
            format=fmt,
            columns=src.columns,
            tags=src.tags,
            ability=src.ability,
            ability_field=src.ability_field,
            ability_map=src.ability_map,
            unresolved=data.unresolved,
            empty=src.empty,
            max_line_chars=data.max_line_chars,
            options=src.options,
            options_pattern=src.options_pattern,
        )
        (heldout if src.split == "heldout" else train).extend(loaded.records)
        lost.update(loaded.dropped_abilities)
        for reason, n in loaded.dropped.items():
            dropped[reason] += n
            dropped_rows.setdefault(reason, []).extend(f"{where}:{r}" for r in loaded.dropped_rows[reason])
    groups, given = by_ability(train), by_ability(heldout)
    gone = {a: n for a, n in sorted(lost.items()) if a not in groups and a not in given}

    def absent(a: str) -> str:
        if a in gone:
            return f"is gone: every one of its {gone[a]:,} rows was dropped (an empty text; data inspect lists them)"
        return f"does not occur in the data (present: {', '.join(groups)})"

    for a in list(given):
        if a not in groups:
            problem(f"ability '{a}': has held-out data (split: heldout) but no training examples")
            given.pop(a)
    if data.abilities is not None:
        for a in data.abilities:
            if a not in groups:
                problem(f"data.abilities: '{a}' {absent(a)}")
        for a in list(groups):
            if a not in data.abilities:
                dropped["ability not in data.abilities"] += len(groups.pop(a))
                given.pop(a, None)
    first_seen = {r.ability: f"{r.source}:row {r.row}" for r in reversed([*train, *heldout])}
    alike = check_labels([*groups, *given], first_seen)
    if alike:
        problem(f"data: {alike}")
    for a in data.metrics:
        if a not in groups:
            problem(f"data.metrics: ability '{a}' {absent(a)}")
    metric_of = {a: data.metrics.get(a, data.default_metric) for a in groups}
    for a in groups:
        if metric_of[a] == "choice" and not any(r.options for r in [*groups[a], *given.get(a, [])]):
            problem(
                f"data.metrics: ability '{a}' is scored by choice, but none of its rows has candidate answers "
                "(give its source an options field or an options_pattern that finds them in the prompt)"
            )
    if len(groups) < 2:
        problem(f"data: {len(groups)} abilit{'y' if len(groups) == 1 else 'ies'} found; a mixture needs 2")
    size = data.heldout_size if data.heldout_fraction is None else None
    too_small: dict[str, str] | None = {} if problems is not None else None
    pools = split_pools(
        groups,
        seed=data.seed,
        heldout_size=size if size is not None or data.heldout_fraction is not None else DEFAULT_HELDOUT,
        heldout_fraction=data.heldout_fraction,
        given_heldout=given,
        problems=too_small,
    )
    if problems is not None and too_small:
        problems.extend(too_small.values())
    cap = data.max_train_per_ability
    return RawPools(
        train={a: list(p.train[:cap]) for a, p in pools.items()},
        heldout={a: list(p.heldout) for a, p in pools.items()},
        metrics={a: metric_of[a] for a in pools},
        info={a: {"examples": len(groups[a]), "duplicates_removed": p.duplicates_removed} for a, p in pools.items()},
        dropped=dict(dropped),
        dropped_rows={k: v[:5] for k, v in dropped_rows.items()},
        sources=[s.location for s in data.sources],
        dropped_abilities=gone,
    )


def load_records(cfg: OptimizeConfig, problems: list[str] | None = None) -> RawPools:
    """Read and split the pool: ``cfg.data`` when given, else the built-in suite; ``problems``
    collects the data's problems instead of raising at the first (``_data_records``)."""
    return _suite_records(cfg) if cfg.data is None else _data_records(cfg, problems)


def corpus(cfg: OptimizeConfig, raw: RawPools) -> tuple[list[str] | None, list[str] | None, str]:
    """``(tokenizer texts, pretraining documents, digest)`` for the base; ``None`` means generic
    prose. With ``pretrain.corpus: data`` the documents are the system and user turns of
    the training pools (never responses or held-out examples), in a seeded order."""
    if cfg.pretrain.corpus == "generic":
        return None, None, "generic"
    records = [r for a in sorted(raw.train) for r in raw.train[a]]
    digest = content_hash(records)
    texts = ["\n".join(t.content for t in r.turns) for r in records]
    docs = ["\n".join(t.content for t in r.turns if t.role != "assistant") for r in records]
    random.Random(cfg.pretrain.seed).shuffle(docs)
    return texts, docs, f"data-{digest[:16]}"


def _quantiles(xs: Sequence[int]) -> dict[str, int]:
    s = sorted(xs)
    if not s:
        return {}
    return {f"p{q}": s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))] for q in (10, 50, 90, 100)}


@dataclass
class Pools:
    """Tokenized pools: what the search allocates from and trials train and score on."""

    abilities: list[str]
    records: dict[str, list[Any]]  # training order, trainable examples only
    train: dict[str, list[tuple[list[int], list[int]]]]  # the same order, tokenized and truncated
    heldout: dict[str, list[HeldoutItem]]
    metrics: dict[str, str]
    max_new: dict[str, int]  # generation limit per exact-match ability
    max_repeats: int
    summary: dict[str, Any]

    def lengths(self, ability: str) -> list[int]:
        return [len(ids) for ids, _ in self.train[ability]]

    def caps(self, unit: str) -> dict[str, int]:
        """The most each ability's pool can give, in examples or tokens (``max_repeats`` passes)."""
        if unit == "examples":
            return {a: len(self.train[a]) * self.max_repeats for a in self.abilities}
        return {a: sum(self.lengths(a)) * self.max_repeats for a in self.abilities}

    def plan(self, unit: str, budget: int) -> BudgetPlan:
        """The budget plan a search allocates under; a budget the pool cannot fill (with
        ``max_repeats``) is a ``UserError``."""
        caps = self.caps(unit)
        if budget > sum(caps.values()):
            raise UserError(
                f"budget: {budget:,} {unit} asked for, the pool holds {sum(caps.values()):,} with max_repeats "
                f"{self.max_repeats} ({', '.join(f'{a}={n:,}' for a, n in caps.items())})"
            )
        lengths = {a: self.lengths(a) for a in self.abilities} if unit == "tokens" else None
        return BudgetPlan(unit, budget, caps, self.max_repeats, lengths=lengths)  # type: ignore[arg-type]

    def shipped(self, plan: BudgetPlan) -> dict[str, list[tuple[list[int], list[int]]]]:
        """The prefix of each ability's order that any allocation under ``plan`` can reach
        (the whole order when a count may cycle through it): what a search's trials receive."""
        out = {}
        for a in self.abilities:
            xs = self.train[a]
            if plan.unit == "examples":
                n = min(len(xs), plan.budget)
            else:
                n, used = 0, 0
                while n < len(xs) and used < plan.budget:
                    used += len(xs[n][0])
                    n += 1
            out[a] = xs[:n]
        return out

    def prefixes(self, most: dict[str, int]) -> dict[str, list[tuple[list[int], list[int]]]]:
        """The first ``most[a]`` examples of each ability's order (a count cycles only past
        its pool's end): what the trials of a fixed grid of mixtures receive."""
        return {a: self.train[a][: most[a]] for a in self.abilities}

    def selected(self, mixture: dict[str, int]) -> dict[str, list[Any]]:
        """The records a mixture trains on, per ability: the first n of its fixed order, cycled
        past its end (the nested selection of trainers.proxy.select_examples)."""
        out = {}
        for a in self.abilities:
            xs = self.records[a]
            full, part = divmod(int(mixture.get(a, 0)), len(xs)) if xs else (0, 0)
            out[a] = list(xs) * full + list(xs[:part])
        return out

    def data_hash(self, mixture: dict[str, int]) -> str:
        """Content hash of the exact examples a mixture trains on (``selected``)."""
        h = hashlib.sha256()
        for records in self.selected(mixture).values():
            h.update(content_hash(records).encode())
        return h.hexdigest()


def _whole(ids: list[int], mask: list[int], max_length: int, side: str) -> tuple[list[int], list[int]] | None:
    """The example truncated like training, or None when truncation cuts into its last
    assistant turn (the reference, or a candidate answer): then it cannot be scored."""
    cut = truncate(ids, mask, max_length, side)  # type: ignore[arg-type]
    if cut is None:
        return None
    start, full_start = prompt_length(cut[1]), prompt_length(mask)
    return cut if cut[0][start:] == ids[full_start:] else None


def _heldout_item(
    tok: Any, record: Any, ids: list[int], mask: list[int], max_length: int, side: str, choice: bool
) -> HeldoutItem | None:
    cut = _whole(ids, mask, max_length, side)
    if cut is None:
        return None
    reference = next(t.content for t in reversed(record.turns) if t.role == "assistant")
    item = HeldoutItem(ids=cut[0], mask=cut[1], prompt=prompt_length(cut[1]), reference=reference)
    if not choice:
        return item
    # every candidate as the last assistant turn, scored like the reference; the row must list its
    # reference among two or more candidates, all of which survive truncation
    options = list(record.options or ())
    if len(options) < 2 or reference.strip() not in options:
        return None
    context = list(record.turns[:-1])
    encoded = encode_many(tok, [[*context, Turn("assistant", o)] for o in options])
    choices = [_whole(i, m, max_length, side) for i, m in encoded]
    if any(c is None for c in choices):
        return None
    return dataclasses.replace(item, choices=tuple(choices), answer=options.index(reference.strip()))  # type: ignore[arg-type]


def encode_pools(
    raw: RawPools, tok: Any, *, max_length: int, truncation: str, max_new_tokens: int, max_repeats: int
) -> Pools:
    """Tokenize, truncate and drop (module doc); an ability left with no training example
    or no scorable held-out example is a ``DataError``."""
    records: dict[str, list[Any]] = {}
    train: dict[str, list[tuple[list[int], list[int]]]] = {}
    heldout: dict[str, list[HeldoutItem]] = {}
    max_new: dict[str, int] = {}
    abilities: dict[str, dict[str, Any]] = {}
    fix = "raise model.max_length, or use model.truncation: left"
    for a in raw.train:  # the suite's configured order, or data abilities by name
        enc = encode_many(tok, [r.turns for r in raw.train[a]])
        cuts = [truncate(ids, m, max_length, truncation) for ids, m in enc]  # type: ignore[arg-type]
        records[a] = [r for r, c in zip(raw.train[a], cuts, strict=True) if c is not None]
        train[a] = [c for c in cuts if c is not None]
        if not train[a]:
            raise DataError(
                f"ability '{a}': every training example loses its response to truncation at "
                f"model.max_length {max_length} ({fix})"
            )
        choice = raw.metrics[a] == "choice"
        held = [
            _heldout_item(tok, r, ids, m, max_length, truncation, choice)
            for r, (ids, m) in zip(raw.heldout[a], encode_many(tok, [r.turns for r in raw.heldout[a]]), strict=True)
        ]
        heldout[a] = [h for h in held if h is not None]
        if not heldout[a] and choice:
            raise DataError(
                f"ability '{a}': metric choice: none of its {len(held)} held-out examples lists its reference among "
                f"two or more candidate answers that fit model.max_length {max_length} (check the source's options "
                "or options_pattern)"
            )
        if not heldout[a]:
            raise DataError(
                f"ability '{a}': no held-out example keeps its whole reference at model.max_length {max_length} ({fix})"
            )
        # room for the longest reference and its end token, never more than configured
        max_new[a] = min(max_new_tokens, max(len(h.ids) - h.prompt for h in heldout[a]))
        abilities[a] = {
            **raw.info[a],
            "heldout": len(heldout[a]),
            "train": len(train[a]),
            "truncated_away": len(cuts) - len(train[a]),
            "heldout_unscorable": len(held) - len(heldout[a]),
            "metric": raw.metrics[a],
            "mlflow_key": ability_key(a),  # its name in MLflow's metrics and params (allocator.data.labels)
            "tokens": _quantiles([len(ids) for ids, _ in enc]),
            "train_tokens": sum(len(ids) for ids, _ in train[a]),
        }
    summary = {
        "sources": raw.sources,
        "tokenizer": tok.spec().get("name", "char"),
        "max_length": max_length,
        "truncation": truncation,
        "abilities": abilities,
        "dropped": raw.dropped,
        "dropped_rows": raw.dropped_rows,
        "dropped_abilities": raw.dropped_abilities,
    }
    return Pools(
        abilities=list(records),
        records=records,
        train=train,
        heldout=heldout,
        metrics={a: raw.metrics[a] for a in records},
        max_new=max_new,
        max_repeats=max_repeats,
        summary=summary,
    )


@contextmanager
def trainer_errors() -> Iterator[None]:
    """The trainers' bad-input errors (a tokenizer folder, a chat template) as user errors."""
    try:
        yield
    except TrainerError as e:
        raise UserError(str(e)) from None


def prepare_pools(
    cfg: OptimizeConfig, log: Callable[[str], None] | None = None, spec: ModelSpec | None = None
) -> tuple[Pools, Any, Any]:
    """Read, split and tokenize the pool: ``(pools, tokenizer, corpus)``, where ``corpus`` is
    ``(pretraining documents or None, digest)`` for the base. ``spec`` is the model whose
    tokenizer counts (default ``cfg.model``'s; a job passes the pretrained model pinned to its
    commit)."""
    from trainers.corpus import generic_documents
    from trainers.pretrain import build_or_load_tokenizer

    raw = load_records(cfg)
    texts, docs, digest = corpus(cfg, raw)
    if texts is None:  # generic prose: the tokenizer (if trained) reads a sample of it
        pre = cfg.pretrain

        def texts_fn() -> list[str]:
            return generic_documents(2_000_000, seed=pre.seed, echo=pre.echo)
    else:

        def texts_fn() -> list[str]:
            return texts

    if cfg.model.tokenizer == "bpe" and cfg.model.name_or_path is None and log is not None:
        log(f"tokenizer: byte-level BPE, {cfg.model.vocab_size} tokens, trained on the {digest} corpus (cached)")
    with trainer_errors():
        tok = build_or_load_tokenizer(spec or cfg.model.spec(), texts_fn, digest)
        pools = encode_pools(
            raw,
            tok,
            max_length=cfg.model.max_length,
            truncation=cfg.model.truncation,
            max_new_tokens=cfg.proxy.max_new_tokens,
            max_repeats=cfg.data.max_repeats if cfg.data is not None else 1,
        )
    return pools, tok, (docs, digest)
