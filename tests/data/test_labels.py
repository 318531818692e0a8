"""Ability labels as real datasets carry them: keys where MLflow and Tune restrict names,
refusals for labels that cannot be told apart, and one optimization end to end."""

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from allocator.data.labels import ability_key, canonical, check_labels, param_name
from allocator.search.extensions import mlflow_name_problem

from ..helpers import job_runs, loss_config

HOSTILE = [
    "emoji 🙂",
    "a/b: Q&A (math)",  # a slash Tune refuses in a search space; & and ( ) MLflow refuses
    "tab\there",
    "nbsp\u00a0and\u2003em space",
    "x" * 300,  # longer than MLflow's 250-character names
    "..",  # a name normpath would resolve
    "Cafe\u0301",  # not NFC
    "\u200b",  # nothing printable
]


@pytest.mark.parametrize("label", ["copy", "数学 arithmetic", "ΣΥΜΒΟΛΑ", "math:hard", "a-b.c", "two words", "Café"])
def test_an_ordinary_label_is_its_own_key(label):
    assert ability_key(label) == label and param_name(label) == f"u_{label}"


@pytest.mark.parametrize("label", HOSTILE)
def test_every_label_has_a_key_mlflow_and_tune_accept(label):
    key = ability_key(label)
    assert key != label and len(key) <= 64 and "/" not in key
    assert key == ability_key(label)  # stable: the same label lands on the same metric in every run
    for prefix in ("score/", "best_score/", "target/score/", "mixture."):
        assert mlflow_name_problem("metric", prefix + key) is None
    assert key.endswith("-" + key.rsplit("-", 1)[1]) and len(key.rsplit("-", 1)[1]) == 8


def test_keys_of_labels_alike_but_different_differ():
    labels = ["a/b", "a&b", "a(b", "a_b-x", "🙂", "🙃"]
    assert len({ability_key(a) for a in labels}) == len(labels)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            ["Math", "math "],
            "ability labels 'Math' (data.jsonl:row 3) and 'math ' differ only in case, spaces or Unicode form",
        ),
        (["math", "\uff4d\uff41\uff54\uff48"], "differ only in case, spaces or Unicode form"),  # fullwidth
        (["a b", "a\u00a0 b"], "differ only in case"),
        (["Café", "Cafe\u0301"], "differ only in case"),
        (["red\x1b[31m", "blue"], "contains the control character U+001B"),
        (["lone \ud800", "b"], "contains the control character U+D800"),
    ],
)
def test_labels_that_cannot_be_told_apart_are_refused(labels, message):
    problem = check_labels(labels, {labels[0]: "data.jsonl:row 3"})
    assert problem is not None and message in problem
    if "differ" in problem:
        assert "data.jsonl:row 3" in problem and "ability_map" in problem


def test_labels_apart_pass_and_canonical_folds_what_it_should():
    assert check_labels(["copy", "数学", "emoji 🙂", "copy"]) is None  # the same label twice is one ability
    assert canonical("  \uff2d\uff21\uff34\uff28\u00a0\tHard ") == "math hard"


def test_hostile_labels_work_end_to_end(tmp_path, call_cli, ray_session):
    # the user data of loss_config with its abilities renamed to labels MLflow and Tune refuse
    # as names: the search runs, every name in MLflow is a key, every result keeps the labels
    story, arith, copying = "短篇 story 🙂", "a/b: Q&A (math)", "x" * 300
    cfg = loss_config(tmp_path, trials=1)
    train, held = cfg["data"]["sources"]
    train["ability_map"] = {"junk": None, "tale": story, "arith": arith, "copying": copying}
    held["ability"] = copying
    cfg["data"]["metrics"] = {story: "loss", copying: "loss", arith: "loss"}
    cfg["search"]["minimum"] = {arith: 5}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))

    proc = call_cli("optimize", "--config", "c.yaml", "--output", "out.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    labels = {story, arith, copying}
    assert set(out["best"]["mixture"]) == labels and set(out["baselines"]["uniform"]["scores"]) == labels
    assert all(t["status"] == "FINISHED" for t in out["trials"]) and len(out["trials"]) == 2
    assert out["best"]["mixture"][arith] >= 5
    keys = {a: ability_key(a) for a in labels}
    parent, children = job_runs(cfg["tracking"]["uri"], out["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params[f"search.minimum.{keys[arith]}"] == "5"
    assert {f"base_loss/{k}" for k in keys.values()} <= set(parent.data.metrics)
    for run in children.values():
        assert {f"score/{k}" for k in keys.values()} <= set(run.data.metrics)
        counts = {a: int(run.data.params[f"mixture.{k}"]) for a, k in keys.items()}
        trial = next(t for t in out["trials"] if t["name"] == run.data.tags["mlflow.runName"])
        assert counts == trial["mixture"]
    local = MlflowClient(cfg["tracking"]["uri"]).download_artifacts(parent.info.run_id, "pool.json", str(tmp_path))
    pool = json.loads(Path(local).read_text(encoding="utf-8"))
    assert {a: p["mlflow_key"] for a, p in pool["abilities"].items()} == keys  # the label behind each key
    assert f"pool {story}:" in proc.stdout
