"""Which mixtures of an optimization a confirmation trains (pure): its K best distinct searched
mixtures, and spread-out ones (the median and the worst finished trial), because a test of
whether the proxy's ranking holds on the target needs a range of mixtures, not only the
near-ties at the top."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from allocator.errors import UserError

__all__ = ["from_search", "from_sources", "same_counts", "search_mixtures"]


def same_counts(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """Two mixtures with the same counts (an ability absent counts 0)."""
    return all(int(a.get(k, 0)) == int(b.get(k, 0)) for k in {*a, *b})


def from_search(trials: Sequence[Mapping[str, Any]], top: int) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """``(mixtures, estimates)`` of an optimization's ``trials`` (its result's): ``top1`` ..
    ``topK``, its ``top`` best distinct finished searched mixtures (none below the search's
    floor), then ``median`` and ``worst`` among the other finished searched trials, when there
    are any (the uniform baseline is a confirmation's baseline anyway). ``estimates`` holds,
    per name, the search's own measurement and the trial it came from. More than the distinct
    finished searched mixtures is a ``UserError``."""
    finished = [t for t in trials if t.get("status") == "FINISHED" and t.get("objective") is not None]
    searched = [t for t in finished if t.get("kind") == "search" and not t.get("violations")]
    ranked = sorted(searched, key=lambda t: (-float(t["objective"]), str(t["name"])))
    distinct: list[Mapping[str, Any]] = []
    for t in ranked:
        if not any(same_counts(t["mixture"], d["mixture"]) for d in distinct):
            distinct.append(t)
    if top > len(distinct):
        raise UserError(
            f"--top {top}: the optimization has {len(distinct)} distinct finished searched mixture"
            f"{'s' if len(distinct) != 1 else ''} (within its floor)"
        )
    chosen = {f"top{i + 1}": t for i, t in enumerate(distinct[:top])}
    rest = sorted(
        (
            t
            for t in finished
            if t.get("kind") == "search" and not any(same_counts(t["mixture"], c["mixture"]) for c in chosen.values())
        ),
        key=lambda t: (-float(t["objective"]), str(t["name"])),
    )
    rest = [t for i, t in enumerate(rest) if not any(same_counts(t["mixture"], u["mixture"]) for u in rest[:i])]
    if len(rest) >= 2:
        chosen["median"] = rest[(len(rest) - 1) // 2] if len(rest) > 2 else rest[0]
        chosen["worst"] = rest[-1]
    elif rest:
        chosen["worst"] = rest[-1]
    mixtures = {n: {a: int(c) for a, c in t["mixture"].items()} for n, t in chosen.items()}
    estimates = {n: {"objective": float(t["objective"]), "trial": t["name"]} for n, t in chosen.items()}
    return mixtures, estimates


def search_mixtures(
    result: Mapping[str, Any], top: int, *, explicit: bool = True
) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """``from_search`` of an optimization's result (its ``to_dict``), the estimates with its
    uniform baseline's (``uniform``); ``explicit=False`` takes up to ``top`` when fewer exist."""
    trials = result["trials"]
    if not explicit:
        searched = [t for t in trials if t.get("kind") == "search" and t.get("status") == "FINISHED"]
        distinct: list[Mapping[str, Any]] = []
        for t in searched:
            if not t.get("violations") and not any(same_counts(t["mixture"], d["mixture"]) for d in distinct):
                distinct.append(t)
        top = max(1, min(top, len(distinct)))
    mixtures, estimates = from_search(trials, top)
    base = next((t for t in trials if t.get("kind") == "baseline" and t.get("objective") is not None), None)
    if base is not None:
        estimates["uniform"] = {"objective": float(base["objective"]), "trial": base["name"]}
    return mixtures, estimates


def from_sources(
    loaded: Sequence[tuple[str, Mapping[str, Any]]], *, top: int | None, budget: int, design: str | None
) -> tuple[dict[str, dict[str, int]], dict[str, Any], Any]:
    """``(mixtures, estimates, recommendation)`` of ``confirm --from``'s results (each
    ``(source, its JSON)``): an optimization's ``top`` (default 3) best and spread-out mixtures
    with its estimates; a study's tailored and DoIT-rule allocations at ``budget`` (and the
    recommendation they come from). At most one of each; anything else is a ``UserError``."""
    from allocator.recommendation import recommend
    from allocator.report.results import result_kind

    kinds = [result_kind(obj) for _, obj in loaded]
    for (src, _), kind in zip(loaded, kinds, strict=True):
        if kind not in ("optimize", "study"):
            what = f"a {kind} result" if kind else "not a result allocator wrote"
            raise UserError(f"confirm --from {src}: neither an optimization nor a study ({what})")
    if len(set(kinds)) < len(kinds):
        raise UserError("confirm --from: give at most one optimization and one study")
    if top is not None and "optimize" not in kinds:
        raise UserError("confirm --top: picks an optimization's mixtures; --from names no optimization")
    mixtures: dict[str, dict[str, int]] = {}
    estimates: dict[str, Any] = {}
    rec = None
    for (src, obj), kind in zip(loaded, kinds, strict=True):
        if kind == "optimize":
            if design is not None:
                raise UserError(f"design {design!r} picks a study's curves; an optimization's result has none")
            own = int(obj["config"]["budget"])
            if own != budget:  # its trials were measured at its budget, and only compare there
                raise UserError(
                    f"confirm --from {src}: its measured mixtures have {own:,} examples, not {budget:,}: "
                    f"confirm at the budget they share (--budget {own})"
                )
            found, estimates = search_mixtures(obj, top if top is not None else 3, explicit=top is not None)
            mixtures.update(found)
        else:
            rec = recommend(obj, budget=budget, design=design)
            mixtures.update({"tailored": rec.counts, "doit_rule": rec.alternatives["doit_rule"]["counts"]})
    return mixtures, estimates, rec
