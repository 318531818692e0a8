"""User data: every format and source kind, and every malformed input, from files the tests write."""

import gzip
import json

import pytest

from allocator.data import DataError, Turn, detect_format, load_source, summarize

from ..helpers import T0, write_jsonl

PAIRS = [("add 2+2", "4", "math"), ("capital of France?", "Paris", "geo"), ("say hi", "hi", "chat")]


def rows_in_format(fmt: str) -> list[dict]:
    rows = []
    for ins, out, ab in PAIRS:
        if fmt == "alpaca":
            rows.append({"instruction": ins, "input": "", "output": out, "category": ab})
        elif fmt == "sharegpt":
            rows.append(
                {"conversations": [{"from": "human", "value": ins}, {"from": "gpt", "value": out}], "category": ab}
            )
        elif fmt == "messages":
            rows.append(
                {"messages": [{"role": "user", "content": ins}, {"role": "assistant", "content": out}], "category": ab}
            )
        elif fmt == "prompt_completion":
            rows.append({"prompt": ins, "completion": out, "category": ab})
        else:
            rows.append({"q": ins, "a": out, "category": ab})
    return rows


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "messages", "prompt_completion", "fields"])
def test_every_format_gives_the_same_turns(tmp_path, fmt):
    path = write_jsonl(tmp_path / f"{fmt}.jsonl", rows_in_format(fmt))
    columns = {"prompt": "q", "response": "a"} if fmt == "fields" else None
    loaded = load_source(str(path), format=fmt, columns=columns, ability_field="category")
    assert [(r.turns, r.ability, r.row) for r in loaded.records] == [
        ((Turn("user", i), Turn("assistant", o)), a, n) for n, (i, o, a) in enumerate(PAIRS, start=1)
    ]
    if fmt != "fields":
        assert detect_format(str(path)) == fmt


def test_alpaca_input_and_system_and_multi_turn(tmp_path):
    alpaca = write_jsonl(
        tmp_path / "a.jsonl", [{"instruction": "translate", "input": "chat", "output": "cat", "system": "be brief"}]
    )
    (rec,) = load_source(str(alpaca), format="alpaca", ability="lang").records
    assert rec.turns == (Turn("system", "be brief"), Turn("user", "translate\n\nchat"), Turn("assistant", "cat"))
    multi = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "u1"},
                    {"role": "assistant", "content": "a1"},
                    {"role": "user", "content": "u2"},
                    {"role": "assistant", "content": "a2"},
                ]
            }
        ],
    )
    (rec,) = load_source(str(multi), format="messages", ability="chat").records
    assert [t.role for t in rec.turns] == ["system", "user", "assistant", "user", "assistant"]
    assert (rec.prompt, rec.response) == ("u1", "a2")


@pytest.mark.parametrize("kind", ["json", "json-wrapped", "json-pretty", "jsonl.gz", "parquet", "csv", "disk"])
def test_every_source_kind(tmp_path, kind):
    import datasets

    rows = rows_in_format("prompt_completion")
    if kind.startswith("json-") or kind == "json":
        path = tmp_path / "d.json"
        doc = {"data": rows} if kind == "json-wrapped" else rows
        path.write_text(json.dumps(doc, indent=2 if kind == "json-pretty" else None))
    elif kind == "jsonl.gz":
        path = tmp_path / "d.jsonl.gz"
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    elif kind == "parquet":
        path = tmp_path / "d.parquet"
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    elif kind == "csv":
        path = tmp_path / "d.csv"
        datasets.Dataset.from_list(rows).to_csv(str(path), index=False)
    else:
        path = tmp_path / "saved"
        datasets.Dataset.from_list(rows).save_to_disk(str(path))
    loaded = load_source(str(path), format="prompt_completion", ability_field="category")
    assert [(r.prompt, r.response, r.ability) for r in loaded.records] == PAIRS


def test_csv_cells_stay_text_and_empty_cells_are_empty_texts(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,completion,category\nadd 2+2,4,math\nadd 0+7,007,math\nsay,,chat\n")
    loaded = load_source(str(path), format="prompt_completion", ability_field="category", empty="drop")
    assert [(r.prompt, r.response) for r in loaded.records] == [("add 2+2", "4"), ("add 0+7", "007")]
    assert loaded.dropped == {"empty 'completion'": 1}


def test_ability_map_merges_and_drops_labels_and_unresolved_rows_are_reported(tmp_path):
    rows = [*rows_in_format("prompt_completion"), {"prompt": "x", "completion": "y"}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    loaded = load_source(
        str(path), format="prompt_completion", ability_field="category", ability_map={"geo": "math", "chat": None}
    )
    assert [r.ability for r in loaded.records] == ["math", "math"]
    assert loaded.dropped == {"label 'chat' dropped by ability_map": 1, "no ability label in 'category'": 1}
    assert loaded.dropped_rows["no ability label in 'category'"] == [4]
    s = summarize(loaded)
    assert s["abilities"]["math"]["examples"] == 2 and s["examples"] == 2
    with pytest.raises(DataError, match=r"row 4: field 'category': missing ability label"):
        load_source(str(path), format="prompt_completion", ability_field="category", unresolved="error")


def test_empty_texts_are_errors_or_counted_drops(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [*rows_in_format("prompt_completion"), {"prompt": "p", "completion": " ", "category": "x"}],
    )
    with pytest.raises(DataError, match=r"d\.jsonl: row 4: field 'completion': empty"):
        load_source(str(path), format="prompt_completion", ability_field="category")
    loaded = load_source(str(path), format="prompt_completion", ability_field="category", empty="drop")
    assert len(loaded.records) == 3 and loaded.dropped == {"empty 'completion'": 1}


def bad_file(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


GOOD = '{"prompt": "a", "completion": "b", "category": "c"}\n'


# every malformed input of issue 3, item 7 that lives in a data file; tests/test_user_data.py
# runs the same cases through `allocator optimize`
MALFORMED = [
    ("missing.jsonl", None, "prompt_completion", {}, r"missing\.jsonl: file not found"),
    ("d.jsonl.gz", GOOD, "prompt_completion", {}, r"named \.gz but not gzip-compressed"),
    ("d.jsonl", gzip.compress(GOOD.encode()), "prompt_completion", {}, r"gzip-compressed but not named \.gz"),
    ("d.jsonl", GOOD + '{"prompt": "a",\n', "prompt_completion", {}, r"d\.jsonl: line 2: invalid JSON"),
    ("d.jsonl", "", "prompt_completion", {}, r"d\.jsonl: empty file"),
    (
        "d.jsonl",
        GOOD + '{"prompt": "a", "category": "c"}\n',
        "prompt_completion",
        {},
        r"row 2: field 'completion': missing",
    ),
    (
        "d.jsonl",
        '{"q": "a", "category": "c"}\n',
        "fields",
        {"columns": {"prompt": "q", "response": "r"}},
        r"row 1: field 'r': missing",
    ),
    (
        "d.jsonl",
        '{"prompt": ["a"], "completion": "b", "category": "c"}\n',
        "prompt_completion",
        {},
        r"row 1: field 'prompt': expected a string, got list",
    ),
    (
        "d.jsonl",
        '{"instruction": "", "output": "b", "category": "c"}\n',
        "alpaca",
        {},
        r"row 1: field 'instruction': empty",
    ),
    (
        "d.jsonl",
        '{"conversations": [{"from": "gpt", "value": "b"}, {"from": "human", "value": "a"}]}\n',
        "sharegpt",
        {},
        r"row 1: field 'conversations\[0\]': turn out of order: expected a user turn",
    ),
    (
        "d.jsonl",
        '{"conversations": [{"from": "robot", "value": "a"}]}\n',
        "sharegpt",
        {},
        r"row 1: field 'conversations\[0\]\.from': unknown role 'robot'",
    ),
    (
        "d.jsonl",
        '{"messages": [{"role": "user", "content": "a"}]}\n',
        "messages",
        {},
        r"row 1: field 'messages': no assistant turn",
    ),
    ("d.jsonl", GOOD, "chatml", {}, r"unknown format 'chatml'"),
    (
        "d.jsonl",
        '{"messages": [{"role": ["user"], "content": "a"}]}\n',
        "messages",
        {},
        r"row 1: field 'messages\[0\]\.role': unknown role \['user'\]",
    ),
    (
        "d.jsonl",
        GOOD,
        "prompt_completion",
        {"ability_map": {"poetry": "writing"}},
        r"ability_map: label 'poetry' does not occur in field 'category'",
    ),
    (
        "d.jsonl",
        GOOD.encode() + b'{"prompt": "\xff", "completion": "b"}\n',
        "prompt_completion",
        {},
        r"d\.jsonl: line 2: not UTF-8",
    ),
    (
        "d.jsonl",
        GOOD + '{"prompt": "' + "x" * 200 + '", "completion": "b"}\n',
        "prompt_completion",
        {"max_line_chars": 100},
        r"line 2: 2\d\d characters, over the limit of 100",
    ),
    ("d.txt", GOOD, "prompt_completion", {}, r"unknown file type"),
]


@pytest.mark.parametrize(("name", "content", "fmt", "kwargs", "expected"), MALFORMED)
def test_malformed_input_names_file_row_and_field(tmp_path, name, content, fmt, kwargs, expected):
    path = tmp_path / name if content is None else bad_file(tmp_path, name, content)
    with pytest.raises(DataError, match=expected) as err:
        load_source(str(path), format=fmt, ability_field="category", **kwargs)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_missing_relative_data_file_is_not_taken_for_a_hub_name():
    with pytest.raises(DataError, match=r"^data/train\.jsonl: file not found$"):
        load_source("data/train.jsonl", format="alpaca", ability="x")


def test_hub_name_without_network_is_a_clear_error():
    with pytest.raises(DataError, match=r"no-such-org/no-such-set: not a local path, and the Hugging Face hub"):
        load_source("no-such-org/no-such-set", format="alpaca", ability="x")


def test_inspect_cli_reports_and_errors(tmp_path, run_cli):
    rows = [{"instruction": f"{i} {n}", "output": o, "category": ab} for n in range(3) for i, o, ab in PAIRS]
    path = write_jsonl(tmp_path / "d.jsonl", [*rows, {"instruction": "i", "output": "", "category": "math"}])
    proc = run_cli("data", "inspect", str(path), "--json", "--heldout", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["format"] == "alpaca"
    assert {a: (v["examples"], v["heldout"], v["train"]) for a, v in out["abilities"].items()} == {
        "chat": (3, 1, 2),
        "geo": (3, 1, 2),
        "math": (3, 1, 2),
    }
    assert out["dropped"] == {"empty 'output'": 1}
    proc = run_cli("data", "inspect", str(path), "--strict", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("row 10: field 'output': empty (expected a non-empty string)")
    # every ability too small for the held-out size, each reported, not the first alone
    proc = run_cli("data", "inspect", str(path), "--heldout", "3", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("d.jsonl: 3 problems (listed above)")
    for a in ("chat", "geo", "math"):
        assert f"problem: ability '{a}': 3 examples, not more than its held-out size 3" in proc.stdout


@pytest.mark.skipif(not T0.is_file(), reason=f"the shared T0 data is not at {T0}")
def test_inspect_the_t0_mixture(tmp_path, run_cli):
    proc = run_cli("data", "inspect", str(T0), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {a: v["examples"] for a, v in out["abilities"].items()} == {
        "closed_book_qa": 2048,
        "extractive_qa": 11162,
        "multiple_choice_qa": 14400,
        "paraphrase_identification": 4775,
        "sentiment": 8200,
        "structure_to_text": 2800,
        "summarization": 8200,
        "topic_classification": 2200,  # 3,600 less the 1,400 trec rows whose completion is empty
    }
    assert out["dropped"] == {"empty 'completion'": 1400}
    assert all(v["heldout"] == 100 for v in out["abilities"].values())
    # T0 repeats some examples verbatim: these are the ones a seed-0 split finds in training
    dups = {a: v["duplicates_removed"] for a, v in out["abilities"].items() if v["duplicates_removed"]}
    assert dups == {"extractive_qa": 123, "multiple_choice_qa": 12, "summarization": 6}


def test_same_examples_in_every_format_give_identical_tokens_and_masks(tmp_path):
    from trainers.tokenizer import CharTokenizer

    tok = CharTokenizer()
    encoded = {}
    for fmt in ("alpaca", "sharegpt", "messages", "prompt_completion"):
        path = write_jsonl(tmp_path / f"{fmt}.jsonl", rows_in_format(fmt))
        records = load_source(str(path), format=fmt, ability_field="category").records
        encoded[fmt] = [tok.encode_turns(r.turns) for r in records]
    assert all(v == encoded["alpaca"] for v in encoded.values())
    ids, mask = encoded["alpaca"][0]  # "add 2+2" -> "4": loss on "4" and <eos> only
    assert tok.decode(ids[1:]) == "add 2+2\n4" and mask == [0] * 9 + [1, 1]
    # single-turn conversations use the same template as the built-in suite
    assert encoded["alpaca"][1] == tok.encode_example("capital of France?", "Paris")


def test_multi_turn_loss_falls_on_assistant_turns_and_truncation_never_leaves_no_loss():
    from trainers.tokenizer import CharTokenizer, truncate

    tok = CharTokenizer()
    turns = [Turn("system", "s"), Turn("user", "u"), Turn("assistant", "a"), Turn("user", "v"), Turn("assistant", "b")]
    ids, mask = tok.encode_turns(turns)
    assert [i for i, m in zip(ids, mask, strict=True) if m] == [*tok.encode("a"), 2, *tok.encode("b"), 2]
    assert truncate(ids, mask, 6) == (ids[:6], mask[:6])  # "<bos>s\nu\na": one loss token left
    assert truncate(ids, mask, 5) is None  # nothing to learn from: dropped by the caller
