"""The figures of a study: growth curves with their bootstrap bands, the transference heatmap
(matplotlib, PNG artifacts on the study's MLflow parent run)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from allocator.curves.growth import predict

__all__ = ["study_figures"]


def study_figures(analysis: Mapping[str, Any], abilities: Sequence[str]) -> list[tuple[str, Any]]:
    """``(file name, matplotlib figure)``: the growth curves with their bands, and the
    transference heatmap."""
    import matplotlib

    matplotlib.use("Agg")  # no display; figures are written to MLflow
    import matplotlib.pyplot as plt

    figs = []
    cols = min(4, len(abilities))
    rows = math.ceil(len(abilities) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    colors = {"joint": "tab:blue", "isolated": "tab:orange"}
    for ax, a in zip(axes.flat, abilities, strict=False):
        for design, curves in analysis["growth"].items():
            g = curves[a]
            vs, ys = np.asarray(g["points"]["v"]), np.asarray(g["points"]["y"])
            x = np.geomspace(1, max(float(vs.max()), 2.0), 200)
            model = g["curve"]["model"]
            band = np.array([predict(model, p, x) for p in g["boot"]])
            lo, hi = np.quantile(band, [0.05, 0.95], axis=0)
            c = colors.get(design, "tab:gray")
            ax.fill_between(x, lo, hi, color=c, alpha=0.2)
            ax.plot(x, predict(model, g["curve"]["params"], x), color=c, label=f"{design} ({model})")
            ax.scatter(np.maximum(vs, 1), ys, color=c, s=10)
        ax.set_xscale("log", base=2)
        ax.set_title(a)
        ax.set_xlabel("examples of this ability (0 plotted at 1)")
        ax.set_ylabel("normalized score")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(abilities) :]:
        ax.axis("off")
    fig.tight_layout()
    figs.append(("growth_curves.png", fig))
    if "transference" in analysis:
        t = analysis["transference"]["matrix"]
        m = np.array([[np.nan if t[a][b] is None else t[a][b] for b in abilities] for a in abilities], dtype=float)
        fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(abilities), 0.8 + 0.7 * len(abilities)))
        im = ax.imshow(m, cmap="RdBu", vmin=-1.5, vmax=1.5)
        ax.set_xticks(range(len(abilities)), abilities, rotation=45, ha="right")
        ax.set_yticks(range(len(abilities)), abilities)
        ax.set_xlabel("trained on b alone")
        ax.set_ylabel("scored on a")
        for i in range(len(abilities)):
            for j in range(len(abilities)):
                if not np.isnan(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
        fig.colorbar(im, ax=ax, label="T[a][b]")
        fig.tight_layout()
        figs.append(("transference.png", fig))
    return figs
