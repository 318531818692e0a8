"""``allocator data inspect``: what a data file or a config's data holds, per ability."""

from __future__ import annotations

import argparse

__all__ = ["data_inspect"]


def data_inspect(args: argparse.Namespace) -> int:
    """``allocator data inspect FILE | --config PATH``: a data file's or a config's pool, summarized."""
    import json

    from allocator.data import inspect_source
    from allocator.errors import UserError

    if (args.file is None) == (args.config is None):
        raise UserError("data inspect: give a data FILE or --config PATH (one of them)")
    if args.config is not None:
        return _inspect_config(args)
    columns: dict[str, str] = {}
    fmt = args.format
    if args.prompt_field or args.response_field or args.context_field:
        fmt = fmt or "fields"
        for key, value in (("prompt", args.prompt_field), ("response", args.response_field)):
            if value:
                columns[key] = value
        if args.context_field:
            columns["context"] = args.context_field
    if args.heldout < 1:
        raise UserError(f"--heldout {args.heldout}: expected at least 1")
    empty = "error" if args.strict else "drop"
    summary = inspect_source(
        args.file, fmt, columns or None, args.ability_field or "category", empty, args.heldout, args.seed
    )
    fmt = summary["format"]
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 2 if summary["problems"] else 0
    print(f"{args.file}: {summary['examples']:,} examples in {len(summary['abilities'])} abilities (format {fmt})")
    head = f"  {'ability':28s} {'examples':>9s} {'heldout':>8s} {'dups':>5s} {'train':>7s}"
    print(head + f" {'chars p10':>9s} {'p50':>6s} {'p90':>6s} {'max':>7s}")
    for name, a in summary["abilities"].items():
        c = a["chars"]
        print(
            f"  {name:28s} {a['examples']:9,d} {a['heldout']:8,d} {a['duplicates_removed']:5,d} {a['train']:7,d}"
            f" {c['p10']:9d} {c['p50']:6d} {c['p90']:6d} {c['p100']:7d}"
        )
    for reason, n in summary["dropped"].items():
        rows = ", ".join(map(str, summary["dropped_rows"][reason]))
        print(f"  dropped {n:,}: {reason} (rows {rows}{', ...' if n > 5 else ''})")
    for a, n in summary["dropped_abilities"].items():
        print(f"  ability '{a}': every one of its {n:,} rows was dropped")
    for problem in summary["problems"]:
        print(f"  problem: {problem}")
    if summary["problems"]:
        n = len(summary["problems"])
        raise UserError(f"{args.file}: {n} problem{'s' if n > 1 else ''} (listed above)")
    return 0


def _inspect_config(args: argparse.Namespace) -> int:
    import json

    from allocator.config import load_config
    from allocator.data.pools import load_records, prepare_pools
    from allocator.errors import UserError

    cfg = load_config(args.config)
    problems: list[str] = []
    load_records(cfg, problems)  # every problem of the config's data, not only the first
    if problems:
        for problem in problems:
            print(f"  problem: {problem}")
        n = len(problems)
        raise UserError(f"{args.config}: {n} problem{'s' if n > 1 else ''} in its data (listed above)")
    pools, _, _ = prepare_pools(cfg)
    summary = {"config": args.config, **pools.summary}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    n = sum(a["examples"] for a in summary["abilities"].values())
    print(
        f"{args.config}: {n:,} examples in {len(summary['abilities'])} abilities from {', '.join(summary['sources'])}"
    )
    print(f"  tokenizer {summary['tokenizer']}, max_length {summary['max_length']}, truncation {summary['truncation']}")
    w = max(10, *(len(a) for a in summary["abilities"]))
    print(
        f"  {'ability':{w}s} {'metric':11s} {'examples':>9s} {'heldout':>8s} {'dups':>5s} {'cut':>5s} {'train':>7s}"
        f" {'tokens p10':>10s} {'p50':>6s} {'p90':>6s} {'max':>7s}"
    )
    for name, a in summary["abilities"].items():
        t = a["tokens"]
        print(
            f"  {name:{w}s} {a['metric']:11s} {a['examples']:9,d} {a['heldout']:8,d} {a['duplicates_removed']:5,d}"
            f" {a['truncated_away']:5,d} {a['train']:7,d} {t['p10']:10d} {t['p50']:6d} {t['p90']:6d} {t['p100']:7d}"
        )
    for reason, n in summary["dropped"].items():
        rows = ", ".join(summary["dropped_rows"].get(reason, []))
        print(f"  dropped {n:,}: {reason}" + (f" ({rows}{', ...' if n > 5 else ''})" if rows else ""))
    print("  (dups: training rows equal to held-out ones, removed; cut: truncated to no response token, removed)")
    return 0
