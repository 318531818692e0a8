"""Benchmark: a growth study, then its tailored allocation confirmed by fresh runs.

    python experiments/bench_study.py [--config PATH] [--keep DIR] [--budget N] [--seeds N] [--warm-cache]
                                      [-- extra study flags]

Runs, in a fresh folder, the real CLI twice:

1. ``allocator study --config PATH --output study.json`` (growth curves, transference,
   complexity; without --config, the embedded default: the built-in suite);
2. ``allocator confirm --config PATH --from study.json --budget N --seeds 3``: the uniform,
   the tailored and the DoIT-rule mixtures of N examples, each trained afresh with 3
   seeds the study never used.

and prints Markdown for docs/STUDY.md: the per-ability table, transference, the rank
correlations, and the confirmed objectives with their spread and paired differences.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(cmd: list[str], work: Path, env: dict[str, str], log: str) -> float:
    t0 = time.perf_counter()
    with open(work / log, "w") as f:  # written as it comes: follow with tail -f
        proc = subprocess.run(cmd, cwd=work, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        print((work / log).read_text()[-4000:])
        raise SystemExit(f"{' '.join(cmd[2:])} exited {proc.returncode}")
    return time.perf_counter() - t0


def _f(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config", help="YAML config (default: the embedded default)")
    p.add_argument("--keep", help="run in this folder (kept) instead of a temporary one")
    p.add_argument("--budget", type=int, help="budget of the confirmed mixtures (default: the config's)")
    p.add_argument("--seeds", type=int, default=3, help="fresh seeds per confirmed mixture")
    p.add_argument("--warm-cache", action="store_true", help="reuse the user's model cache")
    p.add_argument("extra", nargs="*", help="flags passed to allocator study (after --)")
    args = p.parse_args()

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-study-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not args.warm_cache:
        env["ALLOCATOR_CACHE_DIR"] = str(work / "cache")
    cfg = ["--config", str(Path(args.config).resolve())] if args.config else []
    study_cmd = [sys.executable, "-m", "allocator", "study", *cfg, "--output", "study.json", *args.extra]
    t_study = _run(study_cmd, work, env, "study.log")
    budget = ["--budget", str(args.budget)] if args.budget else []
    confirm_cmd = [sys.executable, "-m", "allocator", "confirm", *cfg, "--from", "study.json", *budget]
    confirm_cmd += ["--seeds", str(args.seeds), "--output", "confirm.json"]
    t_confirm = _run(confirm_cmd, work, env, "confirm.log")

    s = json.loads((work / "study.json").read_text())
    c = json.loads((work / "confirm.json").read_text())
    a = s["analysis"]
    shown = " ".join(["allocator", "study", *([f"--config {args.config}"] if args.config else []), *args.extra])
    print(f"- study: `{shown}`: {len(s['runs'])} proxy runs in {t_study:.0f} s (nproc={os.cpu_count()})")
    print(
        f"- confirm: `allocator confirm{' --config ' + args.config if args.config else ''} --from study.json"
        f"{' --budget ' + str(args.budget) if args.budget else ''} --seeds {args.seeds}`: {t_confirm:.0f} s"
    )
    print()
    for design, curves in a["growth"].items():
        print(f"**{design} design**\n")
        print(
            "| ability | metric | model | gain [90% CI] | sensitivity / doubling | saturation volume | verdict |"
            " complexity | transference in |"
        )
        print("| --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: |")
        for ab in s["abilities"]:
            g = curves[ab]
            sat = g["saturation_volume"]
            sat_s = "none" if sat is None else f"{sat:.0f}" + (" (beyond grid)" if sat > g["vmax"] else "")
            own = design == a["own_design"]
            comp = _f(a["complexity"][ab], ".2f") if own else ""
            t_in = _f(a.get("transference", {}).get("in", {}).get(ab), ".2f") if own else ""
            print(
                f"| {ab} | {s['metrics'][ab]} | {g['curve']['model']} | {g['gain']:.3f} [{_f(g['gain_ci'][0])},"
                f" {_f(g['gain_ci'][1])}] | {g['sensitivity']:.3f} | {sat_s} | {g['verdict']} | {comp} | {t_in} |"
            )
        print()
    if "transference" in a:
        t = a["transference"]["matrix"]
        print("**transference T[a][b]** (row a scored, column b trained on alone)\n")
        print("| a \\ b | " + " | ".join(s["abilities"]) + " |")
        print("| --- |" + " ---: |" * len(s["abilities"]))
        for ab in s["abilities"]:
            print(f"| {ab} | " + " | ".join(_f(t[ab][b], ".2f") for b in s["abilities"]) + " |")
        print()
    for name, r in a["correlations"].items():
        print(f"- Spearman {name.replace('_', ' ')}: rho {_f(r['rho'], '.2f')} (p {_f(r['p'], '.2f')}, n {r['n']})")
    print()
    rec = c["recommendation"]
    print(
        "| mixture | counts | predicted objective | confirmed objective (mean +- std, 3 fresh seeds) |"
        " paired difference to uniform |"
    )
    print("| --- | --- | ---: | ---: | ---: |")
    uni = c["summary"]["uniform"]["objective"]["values"]
    preds = {"tailored": rec["objective"], **{k: v["objective"] for k, v in rec["alternatives"].items()}}
    for name, mix in c["mixtures"].items():
        o = c["summary"][name]["objective"]
        diffs = [x - y for x, y in zip(o["values"], uni, strict=True)]
        mean = sum(diffs) / len(diffs)
        sd = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 if len(diffs) > 1 else 0.0
        counts = ", ".join(f"{k} {v}" for k, v in mix.items())
        pr = preds[name]
        print(
            f"| {name} | {counts} | {pr['score']:.4f} [{pr['lo']:.4f}, {pr['hi']:.4f}] | {o['mean']:.4f} +- "
            f"{o['std']:.4f} | {mean:+.4f} +- {sd:.4f} |"
        )
    print(f"\nrun folder: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
