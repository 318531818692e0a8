"""Growth curves: an ability's score against its data volume (pure numpy/scipy, no I/O).

Three monotone models of the (normalized, allocator.curves.scoring) score ``y`` at ``v``
training examples, ``y0`` being the score with no data:

- ``exp``:    ``y0 + g * (1 - exp(-v / s))``: saturates, at ``y0 + g``, with scale ``s``;
- ``power``:  ``y0 + g * (1 - (1 + v / s) ** -alpha)``: saturates at ``y0 + g`` with a
  heavier (power-law) tail;
- ``loglin``: ``y0 + k * log2(1 + v)``: a constant gain per doubling, never saturates;
- ``hill``:   ``y0 + g * v^h / (s^h + v^h)``: a threshold: little gain well below ``s``,
  then a rise (steeper with ``h``) to the plateau ``y0 + g``. Tiny models learn some
  abilities this way (nothing, then most of it); not in ``MODELS`` (the study's default),
  it is the growth-curve sampler's fourth model.

``g`` and ``k`` may be negative (an ability that data hurts is monotone too).
With a ``ceiling`` (1 for the normalized scores of allocator.curves.scoring: a perfect
model) a saturating model's plateau ``y0 + g`` is bounded by it, and every
prediction is clipped to it: a near-linear fit must not extrapolate past
perfect.
Each is fitted by least squares with variable projection: for fixed shape
parameters (``s``, ``alpha``) the model is linear in ``(y0, g)``, solved
exactly; the shape is found on a log grid and refined by Nelder-Mead, so fits
are deterministic and never fail to converge. The model is chosen by AICc (the
small-sample AIC: a handful of volumes times a few seeds); a model is only
preferred over a simpler one when its AICc is lower by more than 2.

Uncertainty comes from a bootstrap that resamples the replicate runs (seeds)
at each volume independently and refits the chosen model.

``describe`` derives, over the measured range [0, vmax] (``vmin`` is the smallest
positive volume measured):

- **gain**: ``f(vmax) - f(0)``, with a bootstrap interval;
- **sensitivity**: the largest gain over one doubling, ``max f(2v) - f(v)`` for
  ``v`` in [vmin/2, vmax/2] (the steepest region of the curve, per doubling);
- **saturation volume**: where the curve reaches 90% of its asymptotic gain
  (closed form; beyond vmax it is an extrapolation, and ``inf`` for ``loglin``);
- **still growing**: the curve has not reached 90% of its plateau within the
  grid (saturation volume beyond vmax; always, for ``loglin``);
- **verdict**: ``resistant`` when the gain is below ``min_gain`` or its interval
  contains 0 (the ability barely moves, or data hurts it), else ``growing`` or
  ``saturated`` by the rule above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FAR_BEYOND_GRID", "MODELS", "Curve", "Growth", "bootstrap", "describe", "fit_curve", "predict"]

MODELS = ("loglin", "exp", "power")  # simplest first: ties (within 2 AICc) go to the simpler
# a fitted volume past this multiple of the grid's top is a far extrapolation (a power
# law's saturation volume can be 1e10): reports give the bound, not the number
FAR_BEYOND_GRID = 10
_N_PARAMS = {"loglin": 2, "exp": 3, "power": 4, "hill": 4}
_SHAPES = {"loglin": (), "exp": ("s",), "power": ("s", "alpha"), "hill": ("s", "h")}  # nonlinear parameters


def _basis(model: str, v: np.ndarray, shape: Sequence[float]) -> np.ndarray:
    """The non-constant regressor of ``model`` for shape parameters ``shape``."""
    if model == "loglin":
        return np.log2(1.0 + v)
    if model == "exp":
        (s,) = shape
        return 1.0 - np.exp(-v / s)
    if model == "power":
        s, alpha = shape
        return 1.0 - (1.0 + v / s) ** (-alpha)
    if model == "hill":
        s, h = shape
        with np.errstate(divide="ignore", over="ignore"):
            return np.where(v > 0, 1.0 / (1.0 + np.exp(h * (np.log(s) - np.log(np.maximum(v, 1e-300))))), 0.0)
    raise ValueError(f"unknown growth model {model!r} (expected one of {', '.join(_N_PARAMS)})")


def predict(model: str, params: dict[str, float], v: np.ndarray | float) -> np.ndarray:
    """The fitted score at volume(s) ``v`` (never above ``params["ceiling"]`` nor below
    ``params["floor"]`` when set)."""
    v = np.asarray(v, dtype=float)
    if model == "loglin":
        y = params["y0"] + params["k"] * _basis(model, v, ())
    else:
        y = params["y0"] + params["g"] * _basis(model, v, tuple(params[k] for k in _SHAPES[model]))
    c, f = params.get("ceiling"), params.get("floor")
    y = np.minimum(y, c) if c is not None else y
    return np.maximum(y, f) if f is not None else y


def _linear(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least squares ``y ~ y0 + c * x``: (y0, c, residual sum of squares)."""
    a = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    rss = float(np.sum((a @ coef - y) ** 2))
    return float(coef[0]), float(coef[1]), rss


def _capped(x: np.ndarray, y: np.ndarray, ceiling: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares ``y ~ y0 + g * x[j]`` for every row ``x[j]`` (a saturating basis, in
    [0, 1)) with the asymptote ``y0 + g`` at most ``ceiling``: (y0, g, rss) per row. The
    problem is convex, so where the free optimum breaks the bound the optimum lies on it,
    ``g = ceiling - y0``, which leaves one free parameter."""
    x = np.atleast_2d(x)
    xm = x.mean(axis=1, keepdims=True)
    xc = x - xm
    yc = y - y.mean()
    sxx = np.sum(xc * xc, axis=1)
    g = np.divide(xc @ yc, sxx, out=np.zeros_like(sxx), where=sxx > 1e-300)
    y0 = y.mean() - g * xm[:, 0]
    if ceiling is not None:
        over = y0 + g > ceiling
        if np.any(over):
            z = 1.0 - x[over]
            zz = np.sum(z * z, axis=1)
            num = z @ y - ceiling * np.sum(z * x[over], axis=1)
            b0 = np.divide(num, zz, out=np.full_like(zz, ceiling), where=zz > 0)
            y0[over], g[over] = b0, ceiling - b0
    rss = np.sum((y0[:, None] + g[:, None] * x - y) ** 2, axis=1)
    return y0, g, rss


def _fit_model(
    model: str, v: np.ndarray, y: np.ndarray, start: Sequence[float] | None = None, ceiling: float | None = None
) -> tuple[dict[str, float], float]:
    """Least-squares parameters of ``model`` and the residual sum of squares. ``start``
    (shape parameters) skips the grid: the bootstrap starts from the full-data fit.
    ``ceiling`` bounds a saturating model's plateau and clips predictions."""
    from scipy.optimize import minimize  # here: `import allocator` stays light

    if model == "loglin":
        y0, k, rss = _linear(_basis(model, v, ()), y)
        params = {"y0": y0, "k": k}
        if ceiling is not None:  # fitted free, then clipped: the log has no plateau to bound
            params["ceiling"] = ceiling
            rss = float(np.sum((predict(model, params, v) - y) ** 2))
        return params, rss
    vpos = v[v > 0]
    vmax = float(v.max()) if v.size else 1.0
    lo = math.log(max(float(vpos.min()) / 10, 0.05) if vpos.size else 0.05)
    hi = math.log(100 * max(vmax, 1.0))
    # shapes in log space, bounded: s in [lo, hi], alpha in [0.05, 5], h in [0.5, 8]
    second = {"power": (math.log(0.05), math.log(5.0)), "hill": (math.log(0.5), math.log(8.0))}
    bounds = [(lo, hi)] + ([second[model]] if model in second else [])
    zlo, zhi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])

    def rss_of(z: np.ndarray) -> float:
        return float(_capped(_basis(model, v, np.exp(np.clip(z, zlo, zhi))), y, ceiling)[2][0])

    if start is None:
        axes = [np.linspace(lo, hi, 80)] + ([] if model == "exp" else [np.linspace(zlo[1], zhi[1], 40)])
        zs = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
        sh = np.exp(zs)
        x = _basis(model, v[None, :], tuple(sh[:, i : i + 1] for i in range(sh.shape[1])))
        z0 = zs[int(np.argmin(_capped(x, y, ceiling)[2]))]
    else:
        z0 = np.clip(np.log(np.asarray(start, dtype=float)), zlo, zhi)
    res = minimize(rss_of, z0, method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-14, "maxiter": 1000})
    z = np.clip(res.x if res.fun <= rss_of(z0) else z0, zlo, zhi)
    shape = np.exp(z)
    y0s, gs, rsss = _capped(_basis(model, v, shape), y, ceiling)
    params = {"y0": float(y0s[0]), "g": float(gs[0])}
    params.update({k: float(x) for k, x in zip(_SHAPES[model], shape, strict=True)})
    if ceiling is not None:
        params["ceiling"] = ceiling
    return params, float(rsss[0])


def _aicc(rss: float, n: int, k: int) -> float:
    if n - k - 1 <= 0:
        return math.inf
    rss = max(rss, n * 1e-12)  # a perfect fit (e.g. a score that never moves) is not -inf
    return n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


@dataclass(frozen=True)
class Curve:
    """A fitted growth curve; ``curve(v)`` evaluates it."""

    model: str
    params: dict[str, float]
    rss: float
    n: int
    vmax: float
    aicc: dict[str, float] = field(default_factory=dict)  # every model tried

    def __call__(self, v: np.ndarray | float) -> np.ndarray:
        return predict(self.model, self.params, v)

    @property
    def saturates(self) -> bool:
        return self.model != "loglin"

    def volume_reaching(self, fraction: float, gain: float | None = None) -> float:
        """The smallest volume at which the curve has gained ``fraction`` of ``gain``
        (default: its asymptotic gain; ``inf`` for a curve that does not saturate or
        never gets there). Closed forms of the models' inverses."""
        p = self.params
        if gain is None:
            if not self.saturates:
                return math.inf
            gain = p["g"]
        target = fraction * gain
        if target == 0:
            return 0.0
        if self.model == "loglin":
            x = target / p["k"] if p["k"] else -1.0
            return 2.0**x - 1.0 if x >= 0 else math.inf
        q = target / p["g"] if p["g"] else -1.0  # the fraction of the asymptotic gain needed
        if not 0 <= q < 1:
            return math.inf
        if self.model == "exp":
            return -p["s"] * math.log(1.0 - q)
        if self.model == "hill":
            return p["s"] * (q / (1.0 - q)) ** (1.0 / p["h"])
        return p["s"] * ((1.0 - q) ** (-1.0 / p["alpha"]) - 1.0)

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "params": self.params, "rss": self.rss, "n": self.n, "aicc": self.aicc}


def fit_curve(
    volumes: Sequence[float], scores: Sequence[float], models: Sequence[str] = MODELS, ceiling: float | None = None
) -> Curve:
    """Fit every model in ``models`` to the points ``(volumes[i], scores[i])`` (replicates
    welcome) and return the one with the lowest AICc, preferring simpler ones within 2."""
    v = np.asarray(volumes, dtype=float)
    y = np.asarray(scores, dtype=float)
    if v.shape != y.shape or v.ndim != 1 or v.size < 2:
        raise ValueError("volumes and scores must be 1-D sequences of the same length (at least 2)")
    if np.any(v < 0) or not np.all(np.isfinite(y)):
        raise ValueError("volumes must be >= 0 and scores finite")
    fits = {}
    aicc = {}
    for m in models:
        if m not in _N_PARAMS:
            raise ValueError(f"unknown growth model {m!r} (expected one of {', '.join(_N_PARAMS)})")
        params, rss = _fit_model(m, v, y, ceiling=ceiling)
        fits[m] = (params, rss)
        aicc[m] = _aicc(rss, v.size, _N_PARAMS[m])
    ordered = sorted(models, key=lambda m: _N_PARAMS[m])
    chosen = ordered[0]
    for m in ordered[1:]:
        if aicc[m] < aicc[chosen] - 2.0:
            chosen = m
    params, rss = fits[chosen]
    return Curve(chosen, params, rss, int(v.size), float(v.max()), aicc)


def bootstrap(
    volumes: Sequence[float],
    scores: Sequence[float],
    model: str,
    draws: int = 200,
    seed: int = 0,
    ceiling: float | None = None,
    resample: str = "replicates",
) -> list[Curve]:
    """``draws`` refits of ``model`` to resampled data, for confidence bands and intervals
    of derived quantities. ``resample="replicates"`` (a study's grid) draws the
    replicates within each volume with replacement; ``"points"`` (scattered volumes, as
    a search's trials give) draws the points with positive volume with replacement and
    keeps the points at volume 0 (the untrained base, measured, not sampled)."""
    v = np.asarray(volumes, dtype=float)
    y = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    if resample == "replicates":
        groups = [np.flatnonzero(v == u) for u in np.unique(v)]
    elif resample == "points":
        zero, positive = np.flatnonzero(v == 0), np.flatnonzero(v > 0)
        groups = [positive] + [zero[i : i + 1] for i in range(zero.size)]
    else:
        raise ValueError(f"resample must be 'replicates' or 'points', got {resample!r}")
    full, _ = _fit_model(model, v, y, ceiling=ceiling)
    start = [full[k] for k in _SHAPES[model]] or None
    out = []
    for _ in range(draws):
        idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
        params, rss = _fit_model(model, v[idx], y[idx], start, ceiling)
        out.append(Curve(model, params, rss, int(idx.size), float(v.max())))
    return out


@dataclass(frozen=True)
class Growth:
    """What a growth curve says about one ability (module doc for the definitions)."""

    curve: Curve
    base: float
    gain: float
    gain_ci: tuple[float, float]
    sensitivity: float
    sensitivity_ci: tuple[float, float]
    saturation_volume: float
    half_volume: float  # where half of the measured gain is reached (allocator.curves.transference)
    still_growing: bool
    verdict: str  # "resistant", "saturated" or "growing"
    vmin: float
    vmax: float

    def to_dict(self) -> dict[str, object]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "curve"}
        return {"curve": self.curve.to_dict(), **d}


def _sensitivity(f: Curve, vmin: float, vmax: float) -> float:
    v = np.geomspace(max(vmin / 2, 1e-3), max(vmax / 2, vmin / 2, 1e-3), 200)
    return float(np.max(f(2 * v) - f(v)))


def _interval(values: Sequence[float], level: float = 0.9) -> tuple[float, float]:
    lo, hi = np.quantile(np.asarray(values, dtype=float), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def describe(
    volumes: Sequence[float],
    scores: Sequence[float],
    *,
    min_gain: float = 0.02,
    draws: int = 200,
    seed: int = 0,
    models: Sequence[str] = MODELS,
    ceiling: float | None = None,
) -> tuple[Growth, list[Curve]]:
    """Fit, bootstrap and derive (module doc); returns the description and the
    bootstrap curves (for bands and for propagating uncertainty downstream)."""
    v = np.asarray(volumes, dtype=float)
    f = fit_curve(v, scores, models, ceiling)
    boot = bootstrap(v, scores, f.model, draws, seed, ceiling)
    vpos = v[v > 0]
    vmin = float(vpos.min()) if vpos.size else 1.0
    vmax = float(v.max())
    gain = float(f(vmax) - f(0.0))
    gain_ci = _interval([float(b(vmax) - b(0.0)) for b in boot])
    sens_ci = _interval([_sensitivity(b, vmin, vmax) for b in boot])
    saturation = f.volume_reaching(0.9)
    growing = saturation > vmax
    if gain < min_gain or gain_ci[0] <= 0.0 <= gain_ci[1]:
        verdict = "resistant"
    else:
        verdict = "growing" if growing else "saturated"
    g = Growth(
        curve=f,
        base=float(f(0.0)),
        gain=gain,
        gain_ci=gain_ci,
        sensitivity=_sensitivity(f, vmin, vmax),
        sensitivity_ci=sens_ci,
        saturation_volume=saturation,
        half_volume=f.volume_reaching(0.5, gain) if gain > 0 else math.inf,
        still_growing=growing,
        verdict=verdict,
        vmin=vmin,
        vmax=vmax,
    )
    return g, boot
