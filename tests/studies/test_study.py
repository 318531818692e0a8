"""The growth study: its grid, its analysis of synthetic runs, recommendations, and the
real CLI end to end (Ray Tune + peft + MLflow, tiny sizes)."""

import json
import math
import re

import pytest
import yaml
from mlflow import MlflowClient

from allocator.config import StudyConfig
from allocator.curves.model import GrowthModel
from allocator.errors import UserError
from allocator.recommendation import recommend
from allocator.report.tables import growth_table
from allocator.studies.analysis import prior_from_study
from allocator.studies.specs import run_specs

from ..helpers import SMOKE, study_result, succeeded, synthetic_study


def test_run_specs_cover_the_grid_with_pool_caps():
    cfg = StudyConfig(volumes=[0, 4, 64], designs=["joint", "isolated"], seeds=2)
    specs = run_specs(cfg, ["a", "b"], {"a": 100, "b": 50}, seed=7)
    # 2 positive volumes x (1 joint + 2 isolated) x 2 seeds; volume 0 is the base, not a run
    assert len(specs) == 12
    assert [s.seed for s in specs[:2]] == [7, 8]
    joint64 = [s for s in specs if s.design == "joint" and s.volume == 64]
    assert {tuple(s.mixture.items()) for s in joint64} == {(("a", 64), ("b", 50))}  # b's pool holds 50
    iso = [s for s in specs if s.design == "isolated" and s.ability == "b" and s.volume == 4]
    assert [s.mixture for s in iso] == [{"a": 0, "b": 4}] * 2
    assert len({s.name for s in specs}) == len(specs)


def test_study_config_rejects_a_bad_grid():
    with pytest.raises(ValueError, match="increasing"):
        StudyConfig(volumes=[0, 16, 4])
    with pytest.raises(ValueError, match="at least 2 items"):
        StudyConfig(volumes=[0])


def test_analysis_of_synthetic_runs_finds_the_known_dynamics():
    cfg, abilities, records = synthetic_study()
    result = study_result(cfg, abilities, records)
    a = result["analysis"]
    iso = a["growth"]["isolated"]
    assert {k: iso[k]["verdict"] for k in abilities} == {"sat": "saturated", "grow": "growing", "flat": "resistant"}
    assert iso["sat"]["gain"] == pytest.approx(0.6, abs=0.03)
    assert iso["grow"]["sensitivity"] == pytest.approx(0.06, abs=0.01)
    t = a["transference"]["matrix"]
    assert t["sat"]["grow"] == pytest.approx(0.5, abs=0.05)
    assert abs(t["grow"]["sat"]) < 0.1
    assert t["flat"]["sat"] is None  # flat's own data does not move it: no relative transference
    assert a["complexity"]["flat"] == 1.0 and a["complexity"]["sat"] < a["complexity"]["grow"]
    # the joint design sees sat's own data plus the transfer from grow
    assert a["growth"]["joint"]["sat"]["gain"] == pytest.approx(0.6 + 0.5 * 0.6, abs=0.05)
    json.dumps(result, allow_nan=False)  # JSON-safe: no inf or NaN
    lines = growth_table(a, abilities)
    assert any(line.split()[:1] == ["sat"] and "saturated" in line for line in lines)
    # a saturation volume far past the grid is not printed as a number
    far = json.loads(json.dumps(a))
    for design in far["growth"].values():
        design["sat"]["saturation_volume"] = 19864890997.0
    rows = [line for line in growth_table(far, abilities) if line.split()[:2] == ["sat", "exp"]]
    vmax = far["growth"]["isolated"]["sat"]["vmax"]
    assert len(rows) == 2 and all(f">{10 * vmax:.0f}*" in r.split() and "19864890997" not in r for r in rows)


def test_recommend_puts_the_budget_where_it_still_pays(tmp_path):
    cfg, abilities, records = synthetic_study()
    result = study_result(cfg, abilities, records)
    path = tmp_path / "study.json"
    path.write_text(json.dumps(result))
    rec = recommend(path, budget=300)
    assert sum(rec.counts.values()) == 300
    # sat is worth ~0.6 after a few dozen examples (and grow's data lifts it too); flat is worth nothing
    assert rec.counts["flat"] == 0 and rec.counts["sat"] < rec.counts["grow"]
    assert rec.counts["sat"] >= 10
    assert rec.objective["lo"] <= rec.objective["score"] <= rec.objective["hi"]
    uniform = rec.alternatives["uniform"]["objective"]["score"]
    assert rec.objective["score"] > uniform
    assert rec.rationale["flat"].startswith("resistant") and rec.rationale["grow"].startswith("still growing")
    assert rec.extrapolated == ["grow"]  # 256 was the largest volume measured
    assert sum(rec.alternatives["doit_rule"]["counts"].values()) == 300
    # minimum and maximum are honoured
    bounded = recommend(result, budget=300, minimum={"flat": 20}, maximum={"grow": 150})
    assert bounded.counts["flat"] >= 20 and bounded.counts["grow"] <= 150 and sum(bounded.counts.values()) == 300
    # a request the study cannot answer is a user error that says what is wrong
    for kwargs, message in [
        ({"weights": {"x": 1.0}}, "weights names 'x', not an ability of the study (sat, grow, flat)"),
        ({"maximum": {"sat": 10, "grow": 10, "flat": 10}, "budget": 300}, r"budget 300 must be in 1..30 "),
        ({"budget": 0}, r"budget 0 must be in 1..3,000"),
    ]:
        with pytest.raises(UserError, match=re.escape(message) if "names" in message else message):
            recommend(result, **{"budget": 300, **kwargs})


def test_recommend_from_either_design_and_predictions_never_pass_a_perfect_score():
    cfg, abilities, records = synthetic_study()
    result = study_result(cfg, abilities, records)
    joint = recommend(result, budget=300, design="joint")
    assert sum(joint.counts.values()) == 300 and "joint growth curves" in joint.method
    assert "transference" not in joint.method
    for rec in (joint, recommend(result, budget=300)):
        assert all(p["score"] <= 1.0 and p["hi"] <= 1.0 for p in rec.predicted.values())
    result["analysis"]["growth"].pop("joint")
    with pytest.raises(UserError, match="the study has no joint design"):
        recommend(result, budget=300, design="joint")


def test_recommend_from_a_file_that_is_not_a_study(tmp_path):
    path = tmp_path / "out.json"
    path.write_text(json.dumps({"best": {}}))
    with pytest.raises(UserError, match=r"out\.json: not a study result"):
        recommend(path, budget=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 10**6}, "budget 1,000,000 must be in 1..3,000"),
        ({"budget": 100, "weights": {"poetry": 1.0}}, "weights names 'poetry'"),
        ({"budget": 100, "weights": {"sat": 0.0}}, "must not all be zero"),
        ({"budget": 100, "minimum": {"sat": 80, "grow": 80}}, "no allocation"),
    ],
)
def test_recommend_errors_are_user_errors(kwargs, message):
    cfg, abilities, records = synthetic_study(seeds=1)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        recommend(study_result(cfg, abilities, records), **kwargs)


def _study_config(tmp_path, **search):
    """The loss-scored user data (their scores move with the data, unlike the smoke suite's
    exact matches) on a small grid; one run at a time."""
    from ..helpers import loss_config

    cfg = loss_config(tmp_path, budget=60, study={"volumes": [0, 8, 32], "seeds": 1, "bootstrap": 20}, search=search)
    path = tmp_path / ("study.yaml" if not search else "search.yaml")
    path.write_text(yaml.safe_dump(cfg))
    return path


ABILITIES = {"arith", "copying", "story"}


def test_cli_study_and_recommend_end_to_end(tmp_path, run_cli, call_cli, ray_session):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    proc = run_cli(
        "study", "--config", str(_study_config(tmp_path)), "--tracking-uri", uri, "--output", "s.json", cwd=tmp_path
    )
    out = succeeded(proc, tmp_path / "s.json")
    # 2 positive volumes x (1 joint + 3 isolated) x 1 seed
    assert len(out["runs"]) == 8 and all(r["status"] == "FINISHED" for r in out["runs"])
    assert {r["name"] for r in out["runs"]} >= {"joint-v8-s0", "isolated-copying-v32-s0"}
    assert all(len(r["data_hash"]) == 64 for r in out["runs"])
    growth = out["analysis"]["growth"]
    assert set(growth) == {"joint", "isolated"} and set(growth["isolated"]) == ABILITIES
    for g in growth["isolated"].values():
        assert g["curve"]["model"] in ("loglin", "exp", "power")
        assert g["verdict"] in ("resistant", "saturated", "growing")
        assert len(g["points"]["v"]) == 3  # the base and two volumes, one seed
    assert set(out["analysis"]["transference"]["matrix"]) == ABILITIES
    assert "recommendation for 60 examples" in proc.stdout and "isolated design" in proc.stdout

    client = MlflowClient(uri)
    parent = client.get_run(out["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["allocator.kind"] == "study"
    children = client.search_runs(
        [out["mlflow"]["experiment_id"]], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len(children) == 8 and {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["allocator.kind"] for r in children} == {"study-joint", "study-isolated"}
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"study.json", "pool.json", "growth_table.txt", "growth_curves.png", "transference.png"} <= names

    # recommend for a new budget, from the file and from the MLflow run, without training
    by_file = call_cli("recommend", "--from", "s.json", "--budget", "90", "--json", cwd=tmp_path)
    assert by_file.returncode == 0, by_file.stderr
    rec = json.loads(by_file.stdout)
    assert sum(rec["counts"].values()) == 90
    by_run = call_cli(
        "recommend", "--from", parent.info.run_id, "--budget", "90", "--json", "--tracking-uri", uri, cwd=tmp_path
    )
    assert by_run.returncode == 0, by_run.stderr
    assert json.loads(by_run.stdout)["counts"] == rec["counts"]
    bad = call_cli("recommend", "--from", "nope", "--budget", "90", "--tracking-uri", uri, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "--from nope" in bad.stderr
    assert not math.isnan(rec["objective"]["score"])

    # confirm: uniform, tailored and DoIT-rule mixtures trained afresh, one seed each here
    # the CLI's entry point in this process from here on (on this session's Ray): the study ran
    # in a process of its own
    conf = call_cli(
        "confirm",
        "--config",
        str(_study_config(tmp_path)),
        "--from",
        "s.json",
        "--budget",
        "60",
        "--seeds",
        "1",
        "--tracking-uri",
        uri,
        "--output",
        "c.json",
        cwd=tmp_path,
    )
    c = succeeded(conf, tmp_path / "c.json")
    # the baselines first (proportional differs: the pools differ in size); a DoIT-rule allocation
    # with the counts of another mixture is trained once
    names = list(c["mixtures"])
    assert names[:3] == ["uniform", "proportional", "tailored"]
    assert names[3:] == ["doit_rule"] or any(n.startswith("doit_rule has the counts of") for n in c["notes"])
    assert all(sum(m.values()) == 60 for m in c["mixtures"].values())
    assert c["mixtures"]["tailored"] == c["recommendation"]["counts"]
    assert [r["seed"] for r in c["runs"]] == [1000] * len(names)  # fresh: the study trained with seed 0
    assert {r["name"] for r in c["runs"]} == {f"{n}-s0" for n in names}
    for name, summ in c["summary"].items():
        run = next(r for r in c["runs"] if r["name"] == f"{name}-s0")
        assert summ["objective"]["values"] == [run["objective"]]
    assert "vs uniform" in conf.stdout
    parent = client.get_run(c["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["allocator.kind"] == "confirm"
    assert {"confirm.json", "confirm_table.txt"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}

    # a search warm-started from the study (by run id): its tailored mixture runs right
    # after the baseline, and the growth-curve sampler fits the study's points and uses its
    # transference matrix. With 5 startup trials, only the study's points let the model
    # propose the next mixture after two trials; its prediction is the one a model with
    # those points and that matrix makes, and neither a model without them
    study_run = out["mlflow"]["parent_run_id"]
    config = str(_study_config(tmp_path, n_startup_trials=5))
    args = ["--config", config, "--budget", "60", "--trials", "2", "--sampler", "growth", "--warm-start", study_run]
    opt = call_cli("optimize", *args, "--tracking-uri", uri, "--output", "o.json", cwd=tmp_path)
    o = succeeded(opt, tmp_path / "o.json")
    assert o["warm_start"]["kind"] == "study" and o["warm_start"]["prior_points"] > 0 and o["warm_start"]["transfer"]
    by_name = {t["name"]: t for t in o["trials"]}
    first = by_name["trial-001"]
    assert first["origin"] == "warm start: study-tailored" and first["mixture"] == c["recommendation"]["counts"]
    second = by_name["trial-002"]
    assert second["origin"].startswith("growth model: predicted"), second["origin"]
    transfer = out["analysis"]["transference"]["matrix"]
    assert any(v is not None for row in transfer.values() for v in row.values())
    prior = prior_from_study(out, "isolated")
    caps = {a: v["train"] for a, v in o["pool"]["abilities"].items()}
    seen = [by_name["uniform-baseline"], first]

    def predicted(**kw):
        model = GrowthModel(60, caps, **kw)
        curves, _ = model.fit([t["mixture"] for t in seen], [t["scores"] for t in seen])
        return model.predicted_objective(second["mixture"], curves)

    assert second["predicted"] == pytest.approx(predicted(prior=prior, transfer=transfer), abs=1e-9)
    assert abs(second["predicted"] - predicted(prior=prior)) > 1e-4
    assert abs(second["predicted"] - predicted(transfer=transfer)) > 1e-4

    # a warm start measured against another base is refused before anything is written
    other = json.loads((tmp_path / "s.json").read_text())
    other["base_scores"]["story"]["loss"] += 0.5
    (tmp_path / "other.json").write_text(json.dumps(other))
    before = len(client.search_runs([o["mlflow"]["experiment_id"]]))
    args = ["--config", config, "--budget", "60", "--sampler", "growth", "--warm-start", "other.json"]
    bad = call_cli("optimize", *args, "--tracking-uri", uri, "--output", "bad.json", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert "warm start other.json: was measured against a different untrained base" in bad.stderr
    assert len(client.search_runs([o["mlflow"]["experiment_id"]])) == before and not (tmp_path / "bad.json").exists()


def test_cli_study_bad_volumes_is_a_user_error(tmp_path, call_cli):
    proc = call_cli("study", "--volumes", "0,a", cwd=tmp_path)
    assert proc.returncode == 2 and "--volumes 0,a: expected integers" in proc.stderr
    proc = call_cli("study", "--volumes", "0", cwd=tmp_path)
    assert proc.returncode == 2 and "study.volumes: List should have at least 2 items" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow  # minutes: 7 abilities x 2 volumes x (joint + isolated) x 2 seeds on the smoke sizes
def test_study_on_the_built_in_suite_with_a_reduced_grid(tmp_path, cache_dir):
    import allocator

    s = allocator.study(
        str(SMOKE),
        study={"volumes": [0, 16, 64], "seeds": 2, "bootstrap": 50},
        tracking={"uri": f"sqlite:///{tmp_path / 'store.db'}"},
        storage_path=str(tmp_path / "runs"),
        printer=lambda line: None,
    )
    assert len(s.runs) == 2 * (1 + 7) * 2
    assert set(s.analysis["growth"]["isolated"]) == set(s.abilities) and len(s.abilities) == 7
    rec = allocator.recommend(s, budget=300)
    assert sum(rec.counts.values()) == 300
    assert set(rec.rationale) == set(s.abilities)
