"""``allocator confirm`` on a target, end to end through the CLI's entry point: an optimization,
then its top mixture, the spread-out ones and the baselines trained afresh on the proxy and on a
tiny built-in target; strategies in MLflow and its Model Registry, the champion alias,
``allocator strategies`` and ``allocator export``; bad input refused before anything is written."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest
import yaml

from tests.helpers import job_runs, loss_config, succeeded

# a target of its own shape with the proxy's tokenizer (so both train on the same examples)
TARGET = {
    "model": {
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 64,
        "tokenizer": "bpe",
        "vocab_size": 300,
        "max_length": 48,
    },
    "pretrain": {"steps": 10, "corpus": "data"},
    "epochs": 2,
    "batch_size": 8,
    "workers": 1,
}


def _config(tmp_path, **target):
    cfg = loss_config(tmp_path, trials=2, search={"sampler": "random"}, target={**TARGET, **target})
    path = tmp_path / "confirm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path), cfg["tracking"]["uri"]


def _run_count(uri: str) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments())


def _hash_of_export(rows: list[dict], mixture: dict[str, int]) -> str:
    """The data hash (allocator.data.pools.Pools.data_hash) of exported rows, computed from the
    file alone: per ability in the mixture's (the pool's) order, the content hash of its rows."""
    from allocator.data import content_hash

    h = hashlib.sha256()
    for a in mixture:
        recs = [
            SimpleNamespace(
                ability=a, turns=[SimpleNamespace(role=m["role"], content=m["content"]) for m in r["messages"]]
            )
            for r in rows
            if r["ability"] == a
        ]
        h.update(content_hash(recs).encode())
    return h.hexdigest()


def test_confirm_on_a_target_strategies_and_export(tmp_path, call_cli, ray_session):
    from mlflow import MlflowClient

    config, uri = _config(tmp_path)
    opt = call_cli("optimize", "--config", config, "--output", "o.json", cwd=tmp_path)
    o = succeeded(opt, tmp_path / "o.json")

    # bad input: one line, exit 2, nothing written (no MLflow run, no output file)
    before = _run_count(uri)
    for sub in ("small", "big"):
        (tmp_path / sub).mkdir()
    small, _ = _config(tmp_path / "small", model={**TARGET["model"], "max_length": 9})
    big, _ = _config(tmp_path / "big", workers=4)
    for args, message in [
        (["--top", "9"], "--top 9: the optimization has 2 distinct finished searched mixtures"),
        (["--seeds", "2"], "--seeds 2: a confirmation on the target needs at least 3"),
        (["--from", str(tmp_path / "confirm.yaml")], "cannot read a result JSON"),
    ]:
        bad = call_cli("confirm", "--config", config, "--from", "o.json", *args, "--output", "bad.json", cwd=tmp_path)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr[-2000:]
        assert len(bad.stderr.strip().splitlines()) == 1
    # a target whose own truncation leaves nothing to score
    bad = call_cli("confirm", "--config", small, "--from", "o.json", "--output", "bad.json", cwd=tmp_path)
    assert bad.returncode == 2 and "target: ability 'arith': no held-out example" in bad.stderr, bad.stderr
    # a target that does not fit the cluster (Ray up, MLflow not yet written)
    bad = call_cli("confirm", "--config", big, "--from", "o.json", "--output", "bad.json", cwd=tmp_path)
    assert bad.returncode == 2 and "target: 4 workers x 0.95 CPU" in bad.stderr, bad.stderr
    assert _run_count(uri) == before and not (tmp_path / "bad.json").exists()
    assert not any((tmp_path / sub / "mlflow.db").exists() for sub in ("small", "big"))

    conf = call_cli("confirm", "--config", config, "--from", "o.json", "--top", "1", "--output", "c.json", cwd=tmp_path)
    c = succeeded(conf, tmp_path / "c.json")
    # the baselines (proportional differs: the pools differ in size), the best, the worst
    assert list(c["mixtures"]) == ["uniform", "proportional", "top1", "worst"]
    searched = sorted((t for t in o["trials"] if t["kind"] == "search"), key=lambda t: -t["objective"])
    assert c["mixtures"]["top1"] == searched[0]["mixture"] and c["mixtures"]["worst"] == searched[-1]["mixture"]
    assert all(sum(m.values()) == 90 for m in c["mixtures"].values())
    assert c["seeds"] == [1000, 1001, 1002]
    assert len(c["runs"]) == 4 * 3 * 2 and {r["status"] for r in c["runs"]} == {"FINISHED"}
    targets = [r for r in c["runs"] if r["design"] == "target"]
    assert sorted(r["name"] for r in targets if r["name"].startswith("top1")) == [f"top1-target-s{k}" for k in range(3)]
    for st in ("proxy", "target"):
        summary = c["summary"] if st == "proxy" else c["target"]
        assert set(summary) == set(c["mixtures"])
        runs = [r for r in c["runs"] if r["design"] == ("target" if st == "target" else "confirm")]
        top = [r["objective"] for r in runs if r["name"].startswith("top1-")]
        assert summary["top1"]["objective"]["values"] == top
        cmp = c["comparisons"][st]["uniform"]["top1"]
        assert cmp["n"] == 3 and (cmp["p_holm"] is None or cmp["p_holm"] >= cmp["p"])
        assert set(c["comparisons"][st]) == {"uniform", "proportional"}
    fid = c["fidelity"]["fresh_proxy"]
    assert fid["n"] == 4 and -1 <= fid["spearman"] <= 1 and len(fid["spearman_ci"]) == 2
    curse = c["winners_curse"]
    assert curse["mixture"] == "top1" and curse["search_estimate"] == searched[0]["objective"]
    assert "winner's curse: the search measured top1" in conf.stdout and "proxy-to-target ranking" in conf.stdout

    # strategies: MLflow runs, registered versions, the champion alias on the best on the target
    client = MlflowClient(uri)
    parent, children = job_runs(uri, c["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED"
    strategy_runs = [r for r in children.values() if r.data.tags["allocator.kind"] == "strategy"]
    assert len(strategy_runs) == 4 and {r.data.tags["allocator.confirmed_on"] for r in strategy_runs} == {"target"}
    model = client.get_registered_model("allocator-strategies")
    versions = client.search_model_versions("name='allocator-strategies'")
    assert len(versions) == 4
    means = {n: s["objective"]["mean"] for n, s in c["target"].items()}
    best = max(means, key=lambda n: means[n])
    assert c["champion"]["name"] == best and {k: str(v) for k, v in model.aliases.items()} == {
        "champion": c["champion"]["alias"]
    }
    champ = next(r for r in strategy_runs if r.data.tags["allocator.strategy"] == best)
    assert champ.data.metrics["target/objective_mean"] == pytest.approx(means[best])
    assert champ.data.params["data_hash"] == c["target"][best]["data_hash"]
    files = {a.path for a in client.list_artifacts(champ.info.run_id, "model")}
    assert "model/model.safetensors" in files and not any(f.endswith((".bin", ".pt")) for f in files)

    listed = call_cli("strategies", "--json", "--tracking-uri", uri, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    strategies = json.loads(listed.stdout)
    assert [s["name"] for s in strategies if "champion" in s["aliases"]] == [best]
    assert {s["name"] for s in strategies} == set(c["mixtures"])

    # export: the exact examples the champion trained on, for LLaMA-Factory and axolotl
    from datasets import load_dataset

    for fmt, extra in (("llamafactory", "dataset_info.json"), ("axolotl", "axolotl_datasets.yaml")):
        out = tmp_path / f"export-{fmt}"
        done = call_cli(
            "export", "champion", "--format", fmt, "--output", str(out), "--tracking-uri", uri, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        rows = list(load_dataset("json", data_files=str(out / "data.jsonl"), split="train"))
        mixture = c["mixtures"][best]
        assert len(rows) == sum(mixture.values())
        assert _hash_of_export(rows, mixture) == c["target"][best]["data_hash"]
        assert (out / extra).is_file()
    info = json.loads((tmp_path / "export-llamafactory" / "dataset_info.json").read_text())
    (entry,) = info.values()
    assert entry["file_name"] == "data.jsonl" and entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "messages"} and entry["tags"]["assistant_tag"] == "assistant"
    (ds,) = yaml.safe_load((tmp_path / "export-axolotl" / "axolotl_datasets.yaml").read_text())["datasets"]
    assert ds["path"] == str(tmp_path / "export-axolotl" / "data.jsonl") and ds["type"] == "chat_template"
    assert ds["field_messages"] == "messages"
    # an export never overwrites, and needs a strategy that exists
    again = call_cli(
        "export", "champion", "--format", "jsonl", "--output", str(tmp_path / "export-axolotl"), cwd=tmp_path
    )
    assert again.returncode == 2 and "exists and is not an empty folder" in again.stderr
    nope = call_cli(
        "export", "v99", "--format", "jsonl", "--output", str(tmp_path / "e"), "--tracking-uri", uri, cwd=tmp_path
    )
    assert nope.returncode == 2 and "strategy v99" in nope.stderr and not (tmp_path / "e").exists()

    # --from a result that is neither an optimization nor a study
    before = _run_count(uri)
    bad = call_cli("confirm", "--config", config, "--from", "c.json", cwd=tmp_path)
    assert bad.returncode == 2 and "neither an optimization nor a study (a confirm result)" in bad.stderr
    assert _run_count(uri) == before


def test_optimize_then_confirm_in_one_command(tmp_path, call_cli, ray_session):
    """``optimize --confirm K``: the search, then the confirmation of its best (here on the proxy
    alone: the smoke config has no target), one result file with both."""
    from tests.helpers import SMOKE

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["--config", str(SMOKE), "--trials", "1", "--confirm", "1", "--confirm-seeds", "1"]
    proc = call_cli("optimize", *args, "--tracking-uri", uri, "--output", "o.json", cwd=tmp_path)
    o = succeeded(proc, tmp_path / "o.json")
    conf = o["confirmation"]
    best = next(t for t in o["trials"] if t["kind"] == "search")
    assert conf["kind"] == "confirm" and conf["mixtures"]["top1"] == best["mixture"]
    assert conf["target"] is None and conf["champion"]["alias"] is None  # a proxy-only confirmation names none
    assert "proportional equals uniform (every pool holds as much): trained once, as uniform" in conf["notes"]
    assert [s["name"] for s in conf["strategies"]] == list(conf["mixtures"])
    bad = call_cli("optimize", "--config", str(SMOKE), "--confirm", "5", "--tracking-uri", uri, cwd=tmp_path)
    assert bad.returncode == 2 and "--confirm 5: expected 1 to the 2 searched trials" in bad.stderr


@pytest.mark.slow
def test_a_target_on_two_ray_train_workers_and_a_champion_retrained(tmp_path, ray_session, monkeypatch):
    """The target on 2 Ray Train workers (gloo), twice: the second confirmation retrains the
    champion on the same seeds and target, reproduces its numbers, and the alias stays."""
    from mlflow import MlflowClient

    import allocator

    monkeypatch.chdir(tmp_path)
    config, uri = _config(tmp_path, workers=2)
    mixture = {"arith": 36, "copying": 18, "story": 36}
    first = allocator.confirm(config, {"mine": mixture}, printer=lambda _: None)
    assert list(first.mixtures) == ["uniform", "proportional", "mine"]
    assert {r["status"] for r in first.runs} == {"FINISHED"}
    assert sum(r["design"] == "target" for r in first.runs) == 9
    client = MlflowClient(uri)
    best = first.champion["name"]
    run_id = next(s["run_id"] for s in first.strategies if s["name"] == best)
    assert "model/model.safetensors" in {a.path for a in client.list_artifacts(run_id, "model")}

    second = allocator.confirm(config, {"mine": mixture}, printer=lambda _: None)
    assert f"the champion (version {first.champion['alias']}) has the counts of {best}: trained once" in second.notes
    assert second.target[best]["objective"]["values"] == first.target[best]["objective"]["values"]
    assert second.champion["alias"] is None and "still the best: it stays" in second.champion["reason"]
    model = client.get_registered_model("allocator-strategies")
    assert {k: str(v) for k, v in model.aliases.items()} == {"champion": first.champion["alias"]}
    assert len(client.search_model_versions("name='allocator-strategies'")) == 6
