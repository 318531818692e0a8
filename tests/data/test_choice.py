"""Multiple-choice scoring (``metric: choice``): candidate answers from a row's field or parsed
out of its prompt, never from other rows' answers; encoded for likelihood ranking; refused
with a clear message where no candidates can be had."""

import pytest
import yaml

from allocator.config import load_config
from allocator.data import DataError, load_source
from allocator.data.pools import prepare_pools

from ..helpers import write_jsonl
from .test_pools import _optimize_in_process

LISTED = r"^- (.+)$"  # the options a prompt lists, one per line


def _quiz(n: int) -> list[dict]:
    rows = []
    for k in range(n):
        options = ["red", "blue", "green"][k % 3 :] + ["red", "blue", "green"][: k % 3]
        answer = options[k % 2]
        listed = "\n".join(f"- {o}" for o in options)
        rows.append({"prompt": f"which color, {k}?\n{listed}", "completion": answer, "opts": options})
    return rows


def _config(tmp_path, source_extra: dict, metric: str = "choice", rows: list | None = None):
    quiz = write_jsonl(tmp_path / "quiz.jsonl", rows or _quiz(30))
    other = write_jsonl(tmp_path / "other.jsonl", [{"prompt": f"say {k}", "completion": str(k)} for k in range(30)])
    cfg = {
        "budget": 20,
        "trials": 1,
        "data": {
            "sources": [
                {"path": quiz.name, "format": "prompt_completion", "ability": "quiz", **source_extra},
                {"path": other.name, "format": "prompt_completion", "ability": "say"},
            ],
            "heldout_size": 6,
            "metrics": {"quiz": metric},
        },
        "model": {"max_length": 64},
        "pretrain": {"steps": 2},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_options_come_from_the_prompt_or_a_field(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", _quiz(3))
    parsed = load_source(str(path), format="prompt_completion", ability="quiz", options_pattern=LISTED)
    assert [r.options for r in parsed.records] == [
        ("red", "blue", "green"),
        ("blue", "green", "red"),
        ("green", "red", "blue"),
    ]
    field = load_source(str(path), format="prompt_completion", ability="quiz", options="opts")
    assert [r.options for r in field.records] == [r.options for r in parsed.records]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "completion": "c", "opts": "red, blue"}])
    with pytest.raises(DataError, match=r"bad.jsonl: row 1: field 'opts': expected a list of candidate answers"):
        load_source(str(bad), format="prompt_completion", ability="quiz", options="opts")


def test_held_out_items_rank_the_rows_own_options(tmp_path, cache_dir):
    rows = _quiz(30)
    rows[0]["completion"] = "purple"  # not among its options: that row cannot be scored by choice
    pools, tok, _ = prepare_pools(load_config(_config(tmp_path, {"options_pattern": LISTED}, rows=rows)))
    assert pools.metrics == {"quiz": "choice", "say": "exact_match"}
    held = pools.heldout["quiz"]
    assert held and all(len(it.choices) == 3 for it in held)
    for it in held:
        # each candidate is the whole example with that candidate as the answer; the reference's
        # candidate is exactly the held-out example itself
        assert it.choices[it.answer] == (it.ids, it.mask)
        answers = {tok.decode(ids[len(ids) - sum(m) :]) for ids, m in it.choices}
        prompt = tok.decode(it.ids[: it.prompt])
        assert all(a in prompt for a in answers)  # the prompt's own options, no other row's answers
    info = pools.summary["abilities"]["quiz"]
    assert info["metric"] == "choice" and info["heldout"] + info["heldout_unscorable"] == 6


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, r"data\.metrics: ability 'quiz' is scored by choice, but none of its rows has candidate answers"),
        ({"options_pattern": r"^\* (.+)$"}, r"none of its rows has candidate answers"),
        ({"options_pattern": "(unclosed"}, r"data\.sources\.0: .*options_pattern: not a regular expression"),
        ({"options_pattern": LISTED, "options": "opts"}, r"give at most one of 'options'"),
    ],
)
def test_choice_without_candidates_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys, extra, expected):
    import re

    code, err = _optimize_in_process(tmp_path, monkeypatch, capsys, _config(tmp_path, extra))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert re.search(expected, line), line
