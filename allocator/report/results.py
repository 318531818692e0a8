"""The result files of the jobs: one typed definition each, an explicit ``kind``, written
atomically, read back from a file or from the MLflow run that logged them.

``optimize`` writes an ``OptimizeResult`` (``--output``, and ``recommendation.json`` on its
parent run), ``study`` a ``StudyResult`` (``study.json``), ``confirm`` a ``ConfirmResult``
(``confirm.json``). Each file says its ``kind``; a file written before files carried one is
told by its fields (``result_kind``), as it always was.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from allocator.errors import UserError, first_line

__all__ = [
    "ConfirmResult",
    "OptimizeResult",
    "StudyResult",
    "load_result",
    "result_kind",
    "result_path",
    "write_json",
]


class _Result:
    """A result file: its fields, after its ``kind``."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.__dict__}


@dataclass
class OptimizeResult(_Result):
    """What an optimization found; ``to_dict()`` is the ``--output`` JSON."""

    best: dict[str, Any]
    baselines: dict[str, Any]
    base_scores: dict[str, dict[str, float]]
    pool: dict[str, Any]
    trials: list[dict[str, Any]]
    mlflow: dict[str, Any]
    base_model: dict[str, Any]
    config: dict[str, Any]
    seconds: float
    warm_start: dict[str, Any] | None = None
    search_stats: dict[str, Any] | None = None  # early stopping: trials stopped, steps trained and saved
    pareto: dict[str, Any] | None = None  # multi-objective: the (objective, examples) front

    kind = "optimize"


@dataclass
class StudyResult(_Result):
    """What a study measured and fitted; ``to_dict()`` is the ``--output`` JSON, which
    ``allocator.recommend`` reads back."""

    abilities: list[str]
    metrics: dict[str, str]
    weights: dict[str, float]
    caps: dict[str, int]
    base_scores: dict[str, dict[str, float]]
    runs: list[dict[str, Any]]
    analysis: dict[str, Any]
    pool: dict[str, Any]
    mlflow: dict[str, Any]
    config: dict[str, Any]
    seconds: float

    kind = "study"


@dataclass
class ConfirmResult(_Result):
    """Mixtures trained afresh over several seeds, on the proxy and the target
    (allocator.studies.confirm); ``to_dict()`` is the JSON."""

    mixtures: dict[str, dict[str, int]]
    summary: dict[str, dict[str, Any]]  # proxy runs: name -> objective and per-ability scores (mean, std, per seed)
    runs: list[dict[str, Any]]
    mlflow: dict[str, Any]
    config: dict[str, Any]
    seconds: float
    seeds: list[int] = field(default_factory=list)
    target: dict[str, dict[str, Any]] | None = None  # target runs, as summary; None: no target: section
    # per measurement (proxy, target): {reference: {mixture: paired comparison with p_holm}}
    comparisons: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=dict)  # proxy-to-target Spearman and Kendall
    winners_curse: dict[str, Any] | None = None  # the search's best: its estimate, fresh proxy runs, target
    estimates: dict[str, Any] = field(default_factory=dict)  # the search's own measurements of its mixtures
    strategies: list[dict[str, Any]] = field(default_factory=list)  # MLflow run and registered version each
    champion: dict[str, Any] = field(default_factory=dict)  # the alias: moved to which version, or why not
    notes: list[str] = field(default_factory=list)

    kind = "confirm"

    def to_dict(self) -> dict[str, Any]:
        from allocator.studies.analysis import clean  # NaN p-values (no spread) as null: strict JSON

        return clean(super().to_dict())


def result_kind(obj: Any) -> str | None:
    """``optimize``, ``study`` or ``confirm``: the file's ``kind``, or for a file written
    before results carried one, what its fields show; None for anything else."""
    if not isinstance(obj, dict):
        return None
    if obj.get("kind") in ("optimize", "study", "confirm"):
        return str(obj["kind"])
    if "analysis" in obj and "runs" in obj:
        return "study"
    if "trials" in obj and "best" in obj:
        return "optimize"
    if "mixtures" in obj and "summary" in obj and "runs" in obj:
        return "confirm"
    return None


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(p)


def result_path(source: str, tracking_uri: str | None, names: tuple[str, ...], flag: str = "--from") -> str:
    """``source`` when it is a file, else the first of ``names`` logged on the MLflow run
    ``source`` (downloaded)."""
    if os.path.exists(source):
        return source
    from mlflow import MlflowClient

    from allocator.report.tracking import check_uri, default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    check_uri(uri)
    if uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///")):
        # opening a missing SQLite store would create it: a lookup must not write
        raise UserError(f"{flag} {source}: not a file, and there is no MLflow store at {uri}")
    client = MlflowClient(uri)
    why = ""
    for name in names:
        try:
            return str(client.download_artifacts(source, name))
        except Exception as e:  # MLflow raises several types for a missing run or file
            why = first_line(e)
    raise UserError(f"{flag} {source}: not a file, nor an MLflow run with {' or '.join(names)} in {uri}: {why}")


def load_result(source: str, tracking_uri: str | None, names: tuple[str, ...], flag: str = "--from") -> dict[str, Any]:
    """The JSON object at ``result_path``."""
    path = result_path(source, tracking_uri, names, flag)
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{flag} {source}: not a result JSON (not UTF-8 text, byte {e.start})") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{flag} {source}: cannot read a result JSON: {first_line(e)}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{flag} {source}: not a result JSON (expected an object)")
    return obj
