"""Helpers the tests share, defined once: paths, the smoke and user-data configs, reading a
CLI run's result, and the MLflow store of a job."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.yaml"  # a seconds-long run of the whole path
SUITE = ["first", "copy", "upper", "sort", "count", "add", "reverse"]  # the built-in abilities, in order
T0 = ROOT.parent / "shared" / "data" / "t0-mixture-55k.jsonl.gz"


def succeeded(proc: subprocess.CompletedProcess, output: Path) -> dict:
    """Assert that a CLI run exited 0 (its output tails as the message) and read the JSON it
    wrote with ``--output``, which must be strict JSON (no NaN or inf)."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(output.read_text())
    json.dumps(result, allow_nan=False)
    return result


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def data_rows(n: int = 40, seed: int = 0) -> list[dict[str, str]]:
    """Three abilities of ``n`` rows each (arithmetic, copying, short stories) and one junk row."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        rows.append({"q": f"add {a}+{b}", "a": str(a + b), "kind": "arith"})
        w = "".join(rng.choice("abcdef") for _ in range(rng.randint(3, 6)))
        rows.append({"q": f"repeat {w}", "a": w, "kind": "copying"})
        rows.append({"q": f"tell a story about {w}", "a": f"once {w} met {w[::-1]} and they sang", "kind": "tale"})
    rows.append({"q": "odd one", "a": "x", "kind": "junk"})
    return rows


def data_config(tmp_path: Path, data_overrides: dict | None = None, **top: Any) -> Path:
    """A config of user data (``data_rows``; ``tale`` becomes ``story``, scored by held-out
    loss, ``copying`` has its own held-out file) with a BPE tokenizer; written next to its data."""
    train = write_jsonl(tmp_path / "train.jsonl", data_rows())
    held = write_jsonl(tmp_path / "copy-eval.jsonl", [{"q": "repeat abc", "a": "abc"}, {"q": "repeat fed", "a": "fed"}])
    cols, amap = {"prompt": "q", "response": "a"}, {"junk": None, "tale": "story"}
    data = {
        "sources": [
            {"path": train.name, "format": "fields", "columns": cols, "ability_field": "kind", "ability_map": amap},
            {"path": held.name, "format": "fields", "columns": cols, "ability": "copying", "split": "heldout"},
        ],
        "heldout_size": 4,
        "metrics": {"story": "loss"},
        **(data_overrides or {}),
    }
    cfg = {
        "budget": 1200,
        "budget_unit": "tokens",
        "trials": 1,
        "data": data,
        "model": {"tokenizer": "bpe", "vocab_size": 300, "max_length": 48},
        "pretrain": {"steps": 10, "corpus": "data"},
        "proxy": {"epochs": 1, "max_new_tokens": 6},
        "search": {"n_startup_trials": 1},
        **top,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def loss_config(tmp_path: Path, *, search: dict | None = None, **top: Any) -> dict[str, Any]:
    """A config (as a dict) whose objective moves with the mixture: the user data of
    ``data_rows``, ``copying`` and ``story`` scored by held-out loss, 90 examples. The smoke
    suite's exact matches are all 0 at its sizes, which would make every trial tie. One trial
    at a time (deterministic: Tune starts them in order), MLflow and Tune results in ``tmp_path``."""
    path = data_config(tmp_path, {"metrics": {"story": "loss", "copying": "loss", "arith": "loss"}})
    cfg = yaml.safe_load(path.read_text())
    for src in cfg["data"]["sources"]:
        src["path"] = str(tmp_path / src["path"])
    cfg.update(
        budget=90,
        budget_unit="examples",
        trials=4,
        pretrain={"steps": 10, "corpus": "data"},
        proxy={"epochs": 4, "max_new_tokens": 6},
        search={"n_startup_trials": 1, "max_concurrent_trials": 1, **(search or {})},
        tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        storage_path=str(tmp_path / "runs"),
    )
    cfg.update(top)
    return cfg


def job_runs(uri: str, parent_id: str) -> tuple[Any, dict[str, Any]]:
    """A job's MLflow parent run and its child runs by run id."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return parent, {r.info.run_id: r for r in children}
