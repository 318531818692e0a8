"""The ``allocator`` command line: one function per sub-command.

Exit codes: 0 success, 2 user error (one line on stderr, no traceback),
1 internal failure (traceback on stderr). Heavy imports happen inside the
sub-commands so that ``allocator --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from typing import Any

__all__ = ["main"]

# no telemetry, no hub look-ups from a command that never needs them; set before
# any of those libraries is imported (setting them later has no effect)
for _k, _v in {
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # `strategies` and `export` read artifacts: no tqdm bars
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_AIR_NEW_OUTPUT": "0",  # with verbose=0: no progress tables; we print a line per trial
}.items():
    os.environ.setdefault(_k, _v)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors are user errors too: exit 2
        self.print_usage(sys.stderr)
        print(f"allocator: error: {message}", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="allocator", description="Adaptive per-ability data allocation for instruction tuning.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    o = sub.add_parser(
        "optimize",
        help="search per-ability example counts under a budget",
        description="Search per-ability data mixtures with Ray Tune + Optuna; each trial is a LoRA proxy "
        "fine-tune scored per ability. With no arguments: the built-in ability suite and tiny model.",
    )
    o.add_argument("--config", metavar="PATH", help="YAML config (default: the embedded default)")
    o.add_argument("--trials", type=int, metavar="N", help="searched mixtures (the uniform baseline is extra)")
    o.add_argument("--budget", type=int, metavar="N", help="total training examples across abilities")
    o.add_argument("--seed", type=int, metavar="N")
    o.add_argument(
        "--sampler", choices=["tpe", "random", "gp", "cmaes", "growth"], help="search.sampler (default: tpe)"
    )
    o.add_argument(
        "--warm-start",
        metavar="FILE|RUN_ID",
        help="seed the search with a study's or an optimization's result (its JSON or MLflow run id)",
    )
    o.add_argument(
        "--confirm",
        type=int,
        metavar="K",
        help="then confirm the K best searched mixtures (with the median, the worst and the baselines) on the "
        "config's target: (as `allocator confirm --top K`)",
    )
    o.add_argument("--confirm-seeds", type=int, default=3, metavar="N", help="seeds per confirmed mixture (3)")
    _job_options(o)
    o.set_defaults(func=cmd_optimize)

    s = sub.add_parser(
        "study",
        help="measure each ability's growth with its data volume",
        description="Proxy runs over a volume grid per ability (joint and isolated designs, several seeds), "
        "growth curves with bootstrap bands, transference and complexity, and the tailored allocation for "
        "the config's budget. Everything goes to MLflow; --output writes the result for `allocator recommend`.",
    )
    s.add_argument("--config", metavar="PATH", help="YAML config; its study: section (default: the embedded default)")
    s.add_argument("--seeds", type=int, metavar="N", help="proxy runs per grid point")
    s.add_argument("--volumes", metavar="V,V,...", help="the volume grid, e.g. 0,4,16,64")
    s.add_argument("--budget", type=int, metavar="N", help="budget of the recommendation printed at the end")
    _job_options(s)
    s.set_defaults(func=cmd_study)

    r = sub.add_parser(
        "recommend",
        help="counts per ability for a budget, from a study (no training)",
        description="Recompute the tailored allocation of a study for a new budget: from its --output JSON "
        "or from the study.json of its MLflow parent run.",
    )
    r.add_argument("--from", dest="source", required=True, metavar="FILE|RUN_ID", help="a study JSON or MLflow run id")
    r.add_argument("--budget", type=int, required=True, metavar="N", help="total training examples")
    r.add_argument("--tracking-uri", metavar="URI", help="where RUN_ID lives (default: sqlite:///./mlflow.db)")
    r.add_argument("--design", choices=["isolated", "joint"], help="the study's curves to use (default: isolated)")
    r.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    r.set_defaults(func=cmd_recommend)

    c = sub.add_parser(
        "confirm",
        help="train an optimization's best mixtures, or a study's, afresh on the proxy and the target",
        description="Train mixtures afresh with N seeds (the same for every mixture) on the proxy and, with a "
        "target: section in the config, on the target (a data-parallel fine-tune on Ray Train): from an "
        "optimization its --top K best distinct mixtures with the median and the worst; from a study its tailored "
        "and DoIT-rule allocations for --budget; always the uniform and proportional baselines (and the "
        "registry's champion). Reports paired tests against the baselines (Holm-corrected), the proxy-to-target "
        "Spearman and Kendall, and the winner's curse; every mixture becomes a strategy in the MLflow Model Registry.",
    )
    c.add_argument("--config", metavar="PATH", help="YAML config with a target: section (the search's, usually)")
    c.add_argument(
        "--from",
        dest="sources",
        action="append",
        required=True,
        metavar="FILE|RUN_ID",
        help="an optimization's or a study's result JSON or MLflow run id (may be given twice: one of each)",
    )
    c.add_argument("--top", type=int, metavar="K", help="an optimization's K best distinct mixtures (default 3)")
    c.add_argument("--budget", type=int, metavar="N", help="total training examples (default: the config's)")
    c.add_argument("--seeds", type=int, default=3, metavar="N", help="fresh training seeds per mixture (3)")
    c.add_argument("--design", choices=["isolated", "joint"], help="the study's curves to use (default: isolated)")
    c.add_argument("--proxy-only", action="store_true", help="ignore the config's target: confirm on the proxy only")
    _job_options(c)
    c.set_defaults(func=cmd_confirm)

    st = sub.add_parser(
        "strategies",
        help="list the confirmed strategies of an experiment, best first, with their evidence",
        description="The versions of the experiment's registered model of strategies (MLflow Model Registry), "
        "target-confirmed ones first, by their relative gain over the uniform mixture.",
    )
    st.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    st.add_argument("--experiment", default="allocator", metavar="NAME", help="MLflow experiment (allocator)")
    st.add_argument("--json", action="store_true", help="print them as JSON")
    st.set_defaults(func=cmd_strategies)

    e = sub.add_parser(
        "export",
        help="write a strategy's exact examples for LLaMA-Factory, axolotl or any JSONL reader",
        description="Rebuild the exact examples a strategy trained on (the same nested selection, checked "
        "against its data hash) and write them as JSONL (OpenAI-style messages), with a LLaMA-Factory "
        "dataset_info.json or an axolotl datasets: YAML. Those trainers apply their own chat template and "
        "truncation, not the proxy's.",
    )
    e.add_argument("strategy", metavar="STRATEGY", help="champion (or another alias), a version (3 or v3), or a run id")
    e.add_argument("--format", required=True, choices=["jsonl", "llamafactory", "axolotl"], dest="fmt")
    e.add_argument("--output", required=True, metavar="DIR", help="a folder that does not exist yet (or is empty)")
    e.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    e.add_argument("--experiment", default="allocator", metavar="NAME", help="MLflow experiment (allocator)")
    e.set_defaults(func=cmd_export)

    d = sub.add_parser("data", help="inspect instruction data")
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    i = dsub.add_parser(
        "inspect",
        help="per-ability summary of one data file, or of an optimize config's pool",
        description="Validate data and print, per ability, its examples, held-out size, duplicates removed, "
        "lengths and dropped rows. With --config: the pool exactly as `allocator optimize --config` builds it "
        "(tokenized with the model's tokenizer; lengths in tokens). With FILE: one file (lengths in characters).",
    )
    i.add_argument("file", nargs="?", help="a .jsonl(.gz), .json, .parquet or .csv file, or a save_to_disk folder")
    i.add_argument("--config", metavar="PATH", help="an optimize config: its data (or the built-in suite)")
    i.add_argument("--format", help="alpaca, sharegpt, messages, prompt_completion or fields (default: detected)")
    i.add_argument("--prompt-field", metavar="F", help="the prompt column (implies --format fields)")
    i.add_argument("--response-field", metavar="F", help="the response column (implies --format fields)")
    i.add_argument("--context-field", metavar="F", help="an optional context column (with --format fields)")
    i.add_argument("--ability-field", metavar="F", help="the column naming each row's ability (default: category)")
    i.add_argument("--heldout", type=int, default=100, metavar="N", help="held-out examples per ability (100)")
    i.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the held-out split (0)")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.add_argument("--strict", action="store_true", help="an empty text is an error (default: counted as dropped)")
    i.set_defaults(func=cmd_data_inspect)
    return p


def _job_options(p: argparse.ArgumentParser) -> None:
    """The flags every job shares: the model, where Ray and MLflow are, where the result goes."""
    p.add_argument(
        "--model",
        metavar="PATH|HUB_ID",
        help="the proxies' base: a save_pretrained folder or a hub id (default: the built-in tiny model)",
    )
    p.add_argument("--proxy-kind", choices=["lora", "qlora", "full"], help="the proxy fine-tune (default: lora)")
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: start Ray locally)")
    p.add_argument("--tracking-uri", metavar="URI", help="MLflow tracking URI (default: sqlite:///./mlflow.db)")
    p.add_argument("--output", metavar="PATH", help="write the result as JSON here")
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="RUN_ID",
        help="take up an interrupted job of the same config and flags: its MLflow parent run id "
        "(default: the latest interrupted one in the store)",
    )


def _command(args: argparse.Namespace) -> str:
    """The command line that started this job, without its --resume (printed to resume it)."""
    import shlex

    argv, kept, skip = list(args.argv), [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
        elif a == "--resume":
            skip = i + 1 < len(argv) and not argv[i + 1].startswith("-")
        elif not a.startswith("--resume="):
            kept.append(a)
    return shlex.join(["allocator", *kept])


def cmd_optimize(args: argparse.Namespace) -> int:
    from allocator.config import load_config
    from allocator.errors import UserError

    overrides: dict[str, Any] = {}
    for key in ("trials", "budget", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    overrides.update(_cluster_overrides(args))
    search = {k: v for k, v in (("sampler", args.sampler), ("warm_start", args.warm_start)) if v is not None}
    if search:
        overrides["search"] = search
    cfg = load_config(args.config, overrides)
    _check_output(args.output)
    if args.confirm is not None:
        from allocator.studies.confirm import check_seeds

        if not 1 <= args.confirm <= cfg.trials:
            raise UserError(f"--confirm {args.confirm}: expected 1 to the {cfg.trials} searched trials")
        check_seeds(args.confirm_seeds, cfg)
    _print_config(cfg)

    from allocator.search.optimize import optimize

    result = optimize(cfg, resume=args.resume, command=_command(args))
    out = result.to_dict()
    _write_result(args.output, out)  # the search is done and kept, whatever the confirmation does
    if args.confirm is not None:
        from allocator.studies.candidates import search_mixtures
        from allocator.studies.confirm import confirm

        mixtures, estimates = search_mixtures(out, args.confirm, explicit=False)
        found = sum(n.startswith("top") for n in mixtures)
        fewer = f" (only {found} distinct finished ones)" if found < args.confirm else ""
        print(f"confirming the {args.confirm} best searched mixtures{fewer}:", flush=True)
        conf = confirm(cfg, mixtures, seeds=args.confirm_seeds, estimates=estimates, search_best="top1")
        out["confirmation"] = conf.to_dict()
        _write_result(args.output, out)
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from allocator.config import load_config
    from allocator.errors import UserError
    from allocator.report.tables import recommendation_lines

    study_over: dict[str, Any] = {}
    if args.seeds is not None:
        study_over["seeds"] = args.seeds
    if args.volumes is not None:
        try:
            study_over["volumes"] = [int(v) for v in args.volumes.split(",")]
        except ValueError:
            raise UserError(f"--volumes {args.volumes}: expected integers separated by commas") from None
    overrides: dict[str, Any] = {"study": study_over} if study_over else {}
    if args.budget is not None:
        overrides["budget"] = args.budget
    overrides.update(_cluster_overrides(args))
    cfg = load_config(args.config, overrides)
    _check_output(args.output)
    _print_config(cfg)

    from allocator.recommendation import recommend
    from allocator.studies.study import study

    result = study(cfg, resume=args.resume, command=_command(args))
    _write_result(args.output, result.to_dict())
    if cfg.budget > sum(result.caps.values()):
        print(f"(no recommendation: the budget {cfg.budget:,} is more than the pools hold)")
        return 0
    for line in recommendation_lines(recommend(result, budget=cfg.budget), cfg.budget):
        print(line)
    return 0


def _cluster_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """--model, --proxy-kind, --ray-address and --tracking-uri as config overrides."""
    out: dict[str, Any] = {}
    if args.model is not None:
        out["model"] = {"name_or_path": args.model}
    if args.proxy_kind is not None:
        out["proxy"] = {"kind": args.proxy_kind}
    if args.ray_address is not None:
        out["ray"] = {"address": args.ray_address}
    if args.tracking_uri is not None:
        out["tracking"] = {"uri": args.tracking_uri}
    return out


def _print_config(cfg: Any) -> None:
    import yaml

    print("resolved config:")
    print("  " + yaml.safe_dump(cfg.to_dict(), sort_keys=False).rstrip().replace("\n", "\n  "), flush=True)


def _write_result(path: str | None, obj: Any) -> None:
    from allocator.report.results import write_json

    if path:
        write_json(path, obj)
        print(f"result written to {path}")


def _check_output(path: str | None) -> None:
    from allocator.errors import UserError

    if path:
        out_dir = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(out_dir):
            raise UserError(f"--output {path}: folder {out_dir} does not exist")
        if os.path.isdir(path):
            raise UserError(
                f"--output {path}: is a folder (give a file name, e.g. {os.path.join(path, 'result.json')})"
            )
        if not os.access(out_dir, os.W_OK):
            raise UserError(f"--output {path}: folder {out_dir} is not writable")


def _study_source(source: str, tracking_uri: str | None) -> str:
    """A study's or optimization's JSON path, or the ``study.json`` / ``recommendation.json``
    of an MLflow run (downloaded)."""
    from allocator.report.results import result_path

    return result_path(source, tracking_uri, ("study.json", "recommendation.json"))


def cmd_recommend(args: argparse.Namespace) -> int:
    import json

    from allocator.recommendation import recommend
    from allocator.report.tables import recommendation_lines

    rec = recommend(_study_source(args.source, args.tracking_uri), budget=args.budget, design=args.design)
    if args.json:
        print(json.dumps(rec.to_dict(), indent=2))
    else:
        for line in recommendation_lines(rec, args.budget):
            print(line)
    return 0


def cmd_confirm(args: argparse.Namespace) -> int:
    from allocator.config import load_config
    from allocator.errors import UserError
    from allocator.report.results import load_result
    from allocator.report.tables import recommendation_lines
    from allocator.studies.confirm import check_seeds

    overrides = _cluster_overrides(args)
    if args.proxy_only:
        overrides["target"] = None
    if args.budget is not None:
        overrides["budget"] = args.budget
    cfg = load_config(args.config, overrides)
    check_seeds(args.seeds, cfg)
    if args.top is not None and args.top < 1:
        raise UserError(f"--top {args.top}: must be at least 1")
    _check_output(args.output)
    budget = cfg.budget

    from allocator.studies.candidates import from_sources
    from allocator.studies.confirm import confirm

    loaded = [(src, load_result(src, args.tracking_uri, ("study.json", "recommendation.json"))) for src in args.sources]
    mixtures, estimates, rec = from_sources(loaded, top=args.top, budget=budget, design=args.design)
    if rec is not None:
        for line in recommendation_lines(rec, budget):
            print(line, flush=True)
    best = "top1" if "top1" in mixtures else None
    result = confirm(
        cfg,
        mixtures,
        seeds=args.seeds,
        estimates=estimates,
        search_best=best,
        resume=args.resume,
        command=_command(args),
    )
    out = result.to_dict()
    if rec is not None:
        out["recommendation"] = rec.to_dict()
    _write_result(args.output, out)
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    import json

    from allocator.report.registry import strategies
    from allocator.report.tables import strategy_lines

    found = strategies(args.tracking_uri, args.experiment)
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        for line in strategy_lines(found, args.experiment):
            print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from allocator.report.export import export

    written = export(args.strategy, args.fmt, args.output, tracking_uri=args.tracking_uri, experiment=args.experiment)
    for line in written.lines():
        print(line)
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from allocator._inspect_cli import data_inspect

    return data_inspect(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    from allocator.errors import UserError

    try:
        return int(args.func(args))
    except UserError as e:
        print(f"allocator: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("allocator: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        if e.code == signal.SIGTERM:  # Ray's driver handler: sys.exit(15) on SIGTERM
            print("allocator: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        raise
    except Exception:
        traceback.print_exc()
        print("allocator: internal error (the traceback above); please report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
