"""User data through the optimizer: the data config, tokenizers and templates, token budgets,
comparable scores, and every malformed input through `allocator optimize` (exit 2, nothing written)."""

import json
import random
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from allocator.cli import main
from allocator.curves.scoring import normalized
from allocator.data import load_source
from allocator.mixture import BudgetPlan, counts_from_point, examples_within
from trainers.errors import TrainerError
from trainers.tokenizer import load_tokenizer_dir, prompt_length, train_bpe, truncate

from ..helpers import ROOT, T0, data_config, succeeded, write_jsonl
from .test_formats import GOOD, MALFORMED, bad_file, rows_in_format

# ---------------------------------------------------------------- pure math


def test_normalized_scores_are_the_fraction_of_the_gap_closed():
    assert normalized("exact_match", 0.6, 0.2) == pytest.approx(0.5)
    assert normalized("exact_match", 0.1, 0.2) == pytest.approx(-0.125)  # worse than the base
    assert normalized("exact_match", 1.0, 1.0) == 1.0  # nothing left to gain
    assert normalized("loss", 1.5, 3.0) == pytest.approx(0.5)
    assert normalized("loss", 3.0, 3.0) == 0.0
    with pytest.raises(ValueError, match="unknown metric"):
        normalized("rouge", 0.5, 0.1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=30), st.integers(0, 3000), st.integers(1, 3), st.data())
def test_examples_within_is_the_longest_fitting_prefix(lengths, tokens, repeats, data):
    n = examples_within(lengths, tokens, repeats)
    cycled = lengths * repeats
    assert n <= len(cycled) and sum(cycled[:n]) <= tokens
    if n < len(cycled):
        assert sum(cycled[: n + 1]) > tokens
    # nested: more tokens never take fewer examples
    assert examples_within(lengths, tokens + data.draw(st.integers(0, 500)), repeats) >= n


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from("abcd"), st.floats(0, 1), min_size=2), st.integers(1, 2000))
def test_a_token_budget_is_never_exceeded(point, budget):
    rng = random.Random(len(point))
    lengths = {a: [rng.randint(1, 40) for _ in range(60)] for a in point}
    caps = {a: sum(x) for a, x in lengths.items()}
    budget = min(budget, sum(caps.values()))
    counts = BudgetPlan("tokens", budget, caps, lengths=lengths).allocate(point)
    assert sum(sum(lengths[a][:n]) for a, n in counts.items()) <= budget


# ---------------------------------------------------------------- tokenizers and templates

TEXTS = [f"add {i}+{i * 7} then say {w}" for i, w in enumerate(["yes", "no", "maybe", "Paris", "hi"] * 40)]


def test_bpe_is_deterministic_round_trips_and_splits_digits():
    a, b = train_bpe(TEXTS, 300), train_bpe(TEXTS, 300)
    assert a.spec()["tokenizer_json"] == b.spec()["tokenizer_json"]
    text = "Capital of France? Paris, 1234 é"
    assert a.decode(a.encode(text)) == text
    assert [a.tok.decode([i]) for i in a.encode("1234")] == ["1", "2", "3", "4"]
    assert (a.pad_id, a.bos_id, a.eos_id) == (0, 1, 2)


def test_same_examples_in_every_format_give_identical_bpe_ids_and_masks(tmp_path):
    tok = train_bpe(TEXTS, 300)
    encoded = {}
    for fmt in ("alpaca", "sharegpt", "messages", "prompt_completion"):
        path = write_jsonl(tmp_path / f"{fmt}.jsonl", rows_in_format(fmt))
        records = load_source(str(path), format=fmt, ability_field="category").records
        encoded[fmt] = [tok.encode_turns(r.turns) for r in records]
    assert len({json.dumps(v) for v in encoded.values()}) == 1
    ids, mask = encoded["alpaca"][1]  # capital of France? -> Paris
    assert tok.tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "Paris<eos>"


TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


def _tokenizer_dir(tmp_path, template):
    tok = train_bpe(TEXTS, 300)
    tok.tok.chat_template = template
    tok.tok.save_pretrained(tmp_path / "tok")
    return tmp_path / "tok"


def test_a_chat_template_is_used_and_the_loss_falls_on_assistant_turns(tmp_path):
    from allocator.data import Turn

    tok = load_tokenizer_dir(str(_tokenizer_dir(tmp_path, TEMPLATE)))
    assert tok.chat_template == TEMPLATE
    turns = [Turn("system", "be brief"), Turn("user", "add 2+2"), Turn("assistant", "4"), Turn("user", "and 3+3"),
             Turn("assistant", "6")]  # fmt: skip
    ids, mask = tok.encode_turns(turns)
    text = tok.tok.decode(ids)
    assert text == "[system] be brief<eos>[user] add 2+2<eos>[assistant] 4<eos>[user] and 3+3<eos>[assistant] 6<eos>"
    runs, cur = [], []
    for i, m in zip(ids, mask, strict=True):
        if m:
            cur.append(i)
        elif cur:
            runs, cur = [*runs, cur], []
    runs.append(cur)
    assert [tok.tok.decode(r) for r in runs] == ["4<eos>", "6<eos>"]
    # evaluation generates from the context before the last assistant turn: the generation prompt
    assert tok.tok.decode(ids[: prompt_length(mask)]).endswith("and 3+3<eos>[assistant] ")


def test_a_template_that_is_not_prefix_stable_is_a_clear_error(tmp_path):
    from allocator.data import Turn

    unstable = "{{ messages | length }}" + TEMPLATE
    tok = load_tokenizer_dir(str(_tokenizer_dir(tmp_path, unstable)))
    with pytest.raises(TrainerError, match="does not render a conversation's prefixes"):
        tok.encode_turns([Turn("user", "a"), Turn("assistant", "b")])


def test_left_truncation_keeps_the_response_and_bos():
    ids, mask = list(range(10)), [0] * 7 + [1] * 3
    assert truncate(ids, mask, 5, "left") == ([0, 6, 7, 8, 9], [0, 0, 1, 1, 1])
    assert truncate(ids, mask, 5, "right") is None  # the response is cut away: dropped by the caller


# ---------------------------------------------------------------- user data through the optimizer


def test_user_data_optimization_end_to_end(tmp_path, call_cli, ray_session):
    config = data_config(tmp_path)
    proc = call_cli("data", "inspect", "--config", str(config), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pool = json.loads(proc.stdout)
    assert {a: (v["examples"], v["heldout"], v["metric"]) for a, v in pool["abilities"].items()} == {
        "arith": (40, 4, "exact_match"),
        "copying": (40, 2, "exact_match"),  # its held-out set is the separate file
        "story": (40, 4, "loss"),
    }
    assert pool["dropped"] == {"label 'junk' dropped by ability_map": 1}
    assert pool["abilities"]["copying"]["train"] == 40 - pool["abilities"]["copying"]["duplicates_removed"]

    # the CLI in this process, on this session's Ray: the smoke and study runs check it in a process of its own
    proc = call_cli("optimize", "--config", str(config), "--output", "out.json", cwd=tmp_path)
    out = succeeded(proc, tmp_path / "out.json")
    assert out["pool"]["abilities"] == pool["abilities"]
    assert set(out["base_scores"]["story"]) == {"loss"} and set(out["base_scores"]["arith"]) == {"loss", "exact_match"}
    lengths = {}
    for t in out["trials"]:
        assert t["status"] == "FINISHED" and len(t["data_hash"]) == 64
        assert set(t["exact_match"]) == {"arith", "copying"} and set(t["scores"]) == {"arith", "copying", "story"}
        lengths[t["name"]] = t["mixture"]
    assert out["config"]["budget_unit"] == "tokens"
    client = MlflowClient(out["mlflow"]["tracking_uri"])
    parent = out["mlflow"]["parent_run_id"]
    assert "base_loss/story" in client.get_run(parent).data.metrics
    pool_json = client.download_artifacts(parent, "pool.json", str(tmp_path))
    assert json.loads(Path(pool_json).read_text())["abilities"] == pool["abilities"]
    runs = client.search_runs([out["mlflow"]["experiment_id"]])
    hashes = {r.data.params["data_hash"] for r in runs if "data_hash" in r.data.params}
    assert hashes == {t["data_hash"] for t in out["trials"]}
    _mlflow_holds_what_the_json_says(out, client)
    _each_count_is_the_longest_prefix_within_its_token_share(out, config, tmp_path)


def _mlflow_holds_what_the_json_says(out, client):
    """Every trial's per-ability scores, raw scores and objective in MLflow are the JSON's, with
    one history entry per evaluation, and its normalized scores follow from the raw ones and
    the base's raw scores on the parent run."""
    parent = client.get_run(out["mlflow"]["parent_run_id"]).data.metrics
    base = {a: {m: parent[f"base_{m}/{a}"] for m in s} for a, s in out["base_scores"].items()}
    assert base == out["base_scores"]
    reports = out["config"]["proxy"]["reports"]
    for t in out["trials"]:
        run = client.get_run(t["mlflow_run_id"])
        m = run.data.metrics
        assert m["objective"] == pytest.approx(t["objective"], abs=1e-12)
        for a, metric in out["pool"]["abilities"].items():
            assert m[f"score/{a}"] == pytest.approx(t["scores"][a], abs=1e-12)
            assert m[f"loss/{a}"] == pytest.approx(t["losses"][a], abs=1e-12)
            raw = m[f"{metric['metric']}/{a}"]
            assert normalized(metric["metric"], raw, base[a][metric["metric"]]) == pytest.approx(t["scores"][a])
            if metric["metric"] == "exact_match":
                assert m[f"exact_match/{a}"] == t["exact_match"][a]
        steps = [h.step for h in client.get_metric_history(run.info.run_id, "objective")]
        assert len(steps) == reports == t["evaluations"] and steps[-1] == t["steps"]


def _each_count_is_the_longest_prefix_within_its_token_share(out, config, tmp_path):
    """Token budgets end to end: each trial's point (Tune's exact params) splits the budget's
    tokens by the mixture space's mapping, and each ability's count is the longest prefix of
    its fixed order whose tokens fit its share."""
    from allocator.config import load_config
    from allocator.data.pools import prepare_pools

    pools, _, _ = prepare_pools(load_config(config))
    lengths = {a: [len(ids) for ids, _ in pools.train[a]] for a in pools.abilities}
    caps = {a: sum(x) for a, x in lengths.items()}
    budget = out["config"]["budget"]
    points = [json.loads(p.read_text()) for p in (tmp_path / "allocator_runs").glob("*/*/params.json")]
    assert len(points) == len(out["trials"])
    expected = []
    for params in points:
        shares = counts_from_point({a: params[f"u_{a}"] for a in pools.abilities}, budget, caps)
        counts = {}
        for a, share in shares.items():
            n, used = 0, 0
            while n < len(lengths[a]) and used + lengths[a][n] <= share:
                used, n = used + lengths[a][n], n + 1
            counts[a] = n
        expected.append(counts)
    key = lambda c: json.dumps(c, sort_keys=True)  # noqa: E731
    assert sorted(map(key, expected)) == sorted(key(t["mixture"]) for t in out["trials"])


def _optimize_in_process(tmp_path, monkeypatch, capsys, config):
    """`allocator optimize` through the CLI's own entry point (its exit code, its stderr)."""
    monkeypatch.chdir(tmp_path)
    code = main(["optimize", "--config", str(config)])
    err = capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    return code, err


@pytest.mark.parametrize(
    ("name", "content", "fmt", "kwargs", "expected"), MALFORMED, ids=[m[4][:30] for m in MALFORMED]
)
def test_malformed_data_through_optimize_exits_2_and_writes_nothing(
    tmp_path, monkeypatch, capsys, name, content, fmt, kwargs, expected
):
    path = tmp_path / name if content is None else bad_file(tmp_path, name, content)
    other = write_jsonl(tmp_path / "other.jsonl", [{"prompt": f"p{i}", "completion": "c"} for i in range(10)])
    source = {"path": str(path), "format": fmt, "ability_field": "category"}
    source.update({k: v for k, v in kwargs.items() if k != "max_line_chars"})
    data = {"sources": [source, {"path": str(other), "ability": "other"}], "heldout_size": 1}
    if "max_line_chars" in kwargs:
        data["max_line_chars"] = kwargs["max_line_chars"]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": data}))
    code, err = _optimize_in_process(tmp_path, monkeypatch, capsys, config)
    assert code == 2
    (line,) = err.strip().splitlines()
    if fmt == "chatml":  # a format name is checked with the config: the config file and field are named
        assert str(config) in line and "data.sources.0.format" in line and "chatml" in line
    else:
        assert str(path) in line
        import re

        assert re.search(expected, line), line


@pytest.mark.parametrize(
    ("data_overrides", "top", "expected"),
    [
        ({"heldout_size": 45}, {}, r"ability 'arith': 40 examples, not more than its held-out size 45"),
        ({}, {"budget": 10**6}, r"budget: 1,000,000 tokens asked for, the pool holds [\d,]+ with max_repeats 1"),
        ({"abilities": ["arith", "poetry"]}, {}, r"data\.abilities: 'poetry' does not occur in the data"),
        ({"metrics": {"poetry": "loss"}}, {}, r"data\.metrics: ability 'poetry' does not occur"),
        ({}, {"weights": {"poetry": 1.0}}, r"weights: ability 'poetry' is not in the pool"),
        ({"abilities": ["arith"], "metrics": {}}, {}, r"data: 1 ability found; a mixture needs 2"),
    ],
)
def test_pool_errors_through_optimize_exit_2_and_write_nothing(
    tmp_path, monkeypatch, capsys, data_overrides, top, expected
):
    import re

    config = data_config(tmp_path, data_overrides, **top)
    code, err = _optimize_in_process(tmp_path, monkeypatch, capsys, config)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert re.search(expected, line), line


def test_a_budget_past_max_repeats_is_an_error_and_within_it_cycles(tmp_path, monkeypatch, capsys):
    from allocator.config import load_config
    from allocator.data.pools import prepare_pools

    config = data_config(tmp_path, {"max_repeats": 2}, budget=200, budget_unit="examples")
    pools, _, _ = prepare_pools(load_config(config))
    assert pools.plan("examples", 200).caps == {a: 2 * len(pools.train[a]) for a in pools.abilities}
    config = data_config(tmp_path, {"max_repeats": 2}, budget=300, budget_unit="examples")
    code, err = _optimize_in_process(tmp_path, monkeypatch, capsys, config)
    assert code == 2 and "budget: 300 examples asked for" in err and "max_repeats 2" in err


def test_a_good_row_alone_loads(tmp_path):
    # the malformed cases above differ from this file in one row only
    path = bad_file(tmp_path, "d.jsonl", GOOD)
    assert len(load_source(str(path), format="prompt_completion", ability_field="category").records) == 1


T0_CONFIG = ROOT / "experiments" / "t0.yaml"


@pytest.mark.slow  # ~20 s: reads 55k rows and trains the BPE (run by docs/BENCHMARKS.md's T0 command too)
@pytest.mark.skipif(not T0.is_file(), reason=f"the shared T0 data is not at {T0}")
def test_inspect_the_t0_experiment_pool(tmp_path, run_cli):
    proc = run_cli("data", "inspect", "--config", str(T0_CONFIG), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    abilities = out["abilities"]
    assert len(abilities) == 8 and all(a["train"] == 1600 for a in abilities.values())  # max_train_per_ability
    loss = {"closed_book_qa", "extractive_qa", "structure_to_text", "summarization"}
    assert {n for n, a in abilities.items() if a["metric"] == "loss"} == loss
    # held-out references cut by left truncation at 256 tokens cannot be scored, and are counted
    assert {n: a["heldout_unscorable"] for n, a in abilities.items() if a["heldout_unscorable"]} == {
        "extractive_qa": 3,
        "structure_to_text": 3,
        "summarization": 5,
    }
    assert {n: a["heldout"] for n, a in abilities.items()} == {
        n: 40 - abilities[n]["heldout_unscorable"] for n in abilities
    }
    assert out["dropped"] == {"empty 'completion'": 1400}


def test_a_tokenizer_the_trainers_refuse_is_a_user_error_before_anything_is_written(tmp_path, monkeypatch, capsys):
    # the trainers raise their own TrainerError; the pool turns it into a user error (exit 2)
    config = data_config(tmp_path, model={"tokenizer": "no-such-tokenizer"})
    code, err = _optimize_in_process(tmp_path, monkeypatch, capsys, config)
    assert code == 2 and "model.tokenizer: " in err and "not 'char', 'bpe' or a local tokenizer folder" in err
