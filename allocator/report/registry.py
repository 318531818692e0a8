"""Strategies: confirmed mixtures as MLflow runs and versions in the MLflow Model Registry.

Every mixture a confirmation trained becomes a **strategy**: an MLflow run (a child of the
confirmation's parent, tagged ``allocator.kind = strategy``) with the mixture and the target's
recipe as params, the proxy's and the target's scores and deltas as metrics, the data hash
and ``strategy.json`` (the mixture, the evidence, what trained it), ``config.json`` (the
resolved config, from which ``allocator export`` rebuilds the exact examples); and a version
of the experiment's registered model (``<experiment>-strategies``; the registry works on the
SQLite store too). A target-confirmed strategy's model is its first seed's target checkpoint
(safetensors), copied into the run up to ``target.max_checkpoint_mb``, else only its location
recorded. The driver writes all of it (the one MLflow writer). The alias ``champion`` marks
the best; allocator.studies.evidence.choose_champion says when it moves.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from allocator.errors import UserError, first_line

__all__ = [
    "CHAMPION",
    "Champion",
    "find_champion",
    "list_strategies",
    "log_strategy",
    "registry_name",
    "resolve_strategy",
    "set_champion",
    "strategies",
]

CHAMPION = "champion"
STRATEGY_KIND = "strategy"


def registry_name(experiment: str) -> str:
    """The registered model of an experiment's strategies (MLflow refuses '/' and ':' in it)."""
    return f"{experiment.replace('/', '-').replace(':', '-')}-strategies"


@dataclass(frozen=True)
class Champion:
    """The strategy carrying the ``champion`` alias: what a later confirmation must retrain."""

    version: str
    name: str
    mixture: dict[str, int]
    seeds: list[int]
    target_digest: str | None
    run_id: str
    budget: int
    budget_unit: str


def _client(uri: str) -> Any | None:
    """A client of ``uri``; None for a SQLite store that does not exist (a lookup must not create it)."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///") and not os.path.exists(uri.removeprefix("sqlite:///")):
        return None
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _missing(e: Exception) -> bool:
    return "not found" in str(e) or "RESOURCE_DOES_NOT_EXIST" in str(e)


def find_champion(uri: str, experiment: str) -> Champion | None:
    """The experiment's champion, or None (no store, no strategies, no alias yet)."""
    client = _client(uri)
    if client is None:
        return None
    try:
        v = client.get_model_version_by_alias(registry_name(experiment), CHAMPION)
    except Exception as e:  # MLflow raises one type for a missing model and a missing alias
        if _missing(e):
            return None
        raise UserError(f"tracking URI {uri}: reading the model registry: {first_line(e)}") from None
    strategy = _strategy_json(client, v.run_id)
    if strategy is None:  # its run lost its record: nothing a confirmation can retrain
        return None
    return Champion(
        version=str(v.version),
        name=str(v.tags.get("allocator.strategy", "")),
        mixture={a: int(n) for a, n in strategy["mixture"].items()},
        seeds=[int(s) for s in strategy["seeds"]],
        target_digest=strategy.get("target_digest"),
        run_id=v.run_id,
        budget=int(strategy["budget"]),
        budget_unit=str(strategy["budget_unit"]),
    )


def _run_json(client: Any, run_id: str, name: str) -> dict[str, Any]:
    """A JSON artifact of a run, read through a temporary folder that is removed afterwards."""
    import tempfile

    with (
        tempfile.TemporaryDirectory(prefix="allocator-strategy-") as tmp,
        open(client.download_artifacts(run_id, name, tmp)) as f,
    ):
        return json.load(f)


def _strategy_json(client: Any, run_id: str) -> dict[str, Any] | None:
    try:
        return _run_json(client, run_id, "strategy.json")
    except Exception:  # a version whose run lost its artifact
        return None


def log_strategy(
    tracker: Any,
    parent: str,
    *,
    name: str,
    strategy: Mapping[str, Any],
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    config: Mapping[str, Any],
    weights: str | None,
    max_mb: float,
) -> tuple[str, str]:
    """One strategy's MLflow run and registered model version (module doc); returns
    ``(run id, version)``."""
    from trainers.checkpoint import folder_bytes

    client = tracker.client
    tags = {
        "mlflow.parentRunId": parent,
        "allocator.kind": STRATEGY_KIND,
        "allocator.strategy": name,
        "allocator.confirmed_on": strategy["confirmed_on"],
        "allocator.data_hash": strategy["data_hash"],
    }
    run = client.create_run(tracker.experiment_id, run_name=f"strategy-{name}", tags=tags)
    run_id = run.info.run_id
    tracker.log_params(run_id, dict(params))
    tracker.log_metrics(run_id, {k: v for k, v in metrics.items() if math.isfinite(v)}, step=0)
    client.log_dict(run_id, dict(strategy), "strategy.json")
    client.log_dict(run_id, dict(config), "config.json")
    source = f"{run.info.artifact_uri}/strategy.json"
    if weights is not None:
        size = folder_bytes(weights)
        if size <= max_mb * 2**20:
            client.log_artifacts(run_id, weights, "model")
            source = f"{run.info.artifact_uri}/model"
        else:  # too large to copy: where the worker wrote it (the run storage)
            client.set_tag(run_id, "allocator.weights_location", weights)
            source = weights
        client.set_tag(run_id, "allocator.weights_mb", f"{size / 2**20:.2f}")
    client.set_terminated(run_id, "FINISHED")
    model = registry_name(tracker.experiment_name)
    try:
        client.get_registered_model(model)
    except Exception as e:
        if not _missing(e):
            raise
        client.create_registered_model(
            model, description=f"allocator strategies of experiment {tracker.experiment_name}: confirmed mixtures"
        )
    version = client.create_model_version(
        model,
        source=source,
        run_id=run_id,
        tags={"allocator.strategy": name, "allocator.confirmed_on": strategy["confirmed_on"]},
        description=f"mixture {name}: " + ", ".join(f"{a}={n}" for a, n in strategy["mixture"].items()),
    )
    return run_id, str(version.version)


def set_champion(tracker: Any, version: str) -> None:
    tracker.client.set_registered_model_alias(registry_name(tracker.experiment_name), CHAMPION, version)


def list_strategies(uri: str, experiment: str) -> list[dict[str, Any]]:
    """The experiment's strategies, best first: target-confirmed ones by their relative gain
    over the uniform mixture on the target, then proxy-only ones by theirs on the proxy
    (a gain over the same confirmation's uniform mixture compares across confirmations; raw
    objectives, normalized against different bases, do not)."""
    client = _client(uri)
    if client is None:
        raise UserError(f"no MLflow store at {uri}")
    model = registry_name(experiment)
    try:
        aliases = client.get_registered_model(model).aliases
    except Exception as e:
        if _missing(e):
            return []
        raise UserError(f"tracking URI {uri}: reading the model registry: {first_line(e)}") from None
    by_version: dict[str, list[str]] = {}
    for alias, v in aliases.items():
        by_version.setdefault(str(v), []).append(alias)
    out = []
    for v in client.search_model_versions(f"name='{model}'"):
        run = client.get_run(v.run_id)
        strategy = _strategy_json(client, v.run_id) or {}
        on = run.data.tags.get("allocator.confirmed_on", "proxy")
        out.append(
            {
                "version": str(v.version),
                "aliases": sorted(by_version.get(str(v.version), [])),
                "name": run.data.tags.get("allocator.strategy", ""),
                "confirmed_on": on,
                "run_id": v.run_id,
                "parent_run_id": run.data.tags.get("mlflow.parentRunId"),
                "source": v.source,
                "mixture": strategy.get("mixture", {}),
                "metrics": dict(run.data.metrics),
                "evidence": strategy.get("evidence", {}),
            }
        )

    def key(s: dict[str, Any]) -> tuple[int, float]:
        m = s["metrics"]
        gain = m.get(f"{s['confirmed_on']}/vs_uniform/relative", 0.0)
        return (0 if s["confirmed_on"] == "target" else 1, -gain)

    return sorted(out, key=key)


def resolve_strategy(uri: str, experiment: str, ref: str) -> dict[str, Any]:
    """A strategy by ``champion`` (or another alias), its version number (``3`` or ``v3``) or its
    run id: ``{"version", "run_id", "strategy", "config"}``; anything else is a ``UserError``."""
    client = _client(uri)
    if client is None:
        raise UserError(f"strategy {ref}: there is no MLflow store at {uri}")
    model = registry_name(experiment)
    version = None
    try:
        if ref.isdigit() or (ref[:1] == "v" and ref[1:].isdigit()):
            version = client.get_model_version(model, ref.lstrip("v"))
        elif not all(c in "0123456789abcdef" for c in ref) or len(ref) != 32:
            version = client.get_model_version_by_alias(model, ref)
    except Exception as e:
        raise UserError(f"strategy {ref}: not a version or alias of {model} in {uri}: {first_line(e)}") from None
    run_id = version.run_id if version is not None else ref
    strategy = _strategy_json(client, run_id)
    try:
        config = _run_json(client, run_id, "config.json")
    except Exception as e:
        raise UserError(f"strategy {ref}: not a strategy run in {uri} (no config.json): {first_line(e)}") from None
    if strategy is None:
        raise UserError(f"strategy {ref}: run {run_id} is not a strategy (no strategy.json)")
    return {
        "version": str(version.version) if version else None,
        "run_id": run_id,
        "strategy": strategy,
        "config": config,
    }


def strategies(tracking_uri: str | None = None, experiment: str = "allocator") -> list[dict[str, Any]]:
    """The confirmed strategies of ``experiment``, best first, with their evidence
    (``list_strategies``); the tracking URI defaults as every job's does."""
    from allocator.report.tracking import check_uri, default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    check_uri(uri)
    return list_strategies(uri, experiment)
