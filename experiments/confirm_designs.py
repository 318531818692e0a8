"""Confirm a study's recommendations from both designs at once: the uniform mixture, and
the tailored and DoIT-rule mixtures from the isolated curves (with transference) and
from the joint curves, each distinct mixture trained with fresh seeds (allocator.confirm).

    python experiments/confirm_designs.py --config experiments/t0.yaml --from /tmp/study-t0/study.json \\
        [--budget 1600] [--seeds 3]

Run it in the study's folder to share its MLflow store and model cache. Prints the
confirmation table (mean, spread, paired differences to uniform) and each mixture's
predicted objective.
"""

from __future__ import annotations

import argparse
import json


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--from", dest="source", required=True)
    p.add_argument("--budget", type=int)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()

    import allocator
    from allocator.config import load_config
    from allocator.report.tables import confirm_lines

    budget = args.budget or load_config(args.config).budget
    study = json.load(open(args.source))
    mixtures: dict[str, dict[str, int]] = {}
    said: list[str] = []
    for design in study["analysis"]["growth"]:
        rec = allocator.recommend(study, budget=budget, design=design)
        named = {
            "uniform": rec.alternatives["uniform"],
            f"tailored_{design}": {"counts": rec.counts, "objective": rec.objective},
            f"doit_rule_{design}": rec.alternatives["doit_rule"],
        }
        preds = []
        for name, alt in named.items():
            same = next((k for k, m in mixtures.items() if m == alt["counts"]), None)
            if same is None:
                mixtures[name] = alt["counts"]
            preds.append(f"{name}{f' (= {same})' if same else ''} {alt['objective']['score']:.4f}")
        said.append(f"  predicted by the {design} curves: " + ", ".join(preds))
    result = allocator.confirm(args.config, mixtures, seeds=args.seeds, printer=lambda _: None)
    print(f"- `python experiments/confirm_designs.py --config {args.config} --from {args.source} --budget {budget}`")
    print(f"  {len(mixtures)} mixtures x {args.seeds} fresh seeds in {result.seconds:.0f} s")
    for line in confirm_lines(result) + said:
        print(line)
    for name, mix in mixtures.items():
        print(f"  {name}: {mix}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
