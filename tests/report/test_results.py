"""The result files: an explicit kind, files from before it still recognized, atomic writes."""

import json

import pytest

from allocator.report.results import ConfirmResult, OptimizeResult, StudyResult, result_kind, write_json


def _blank(cls):
    return cls(**{name: None for name in cls.__dataclass_fields__})


@pytest.mark.parametrize(
    ("cls", "kind"), [(OptimizeResult, "optimize"), (StudyResult, "study"), (ConfirmResult, "confirm")]
)
def test_every_result_says_its_kind(cls, kind):
    d = _blank(cls).to_dict()
    assert d["kind"] == kind and list(d)[1:] == list(cls.__dataclass_fields__)
    assert result_kind(d) == kind


def test_files_written_before_results_had_a_kind_are_told_by_their_fields():
    assert result_kind({"trials": [], "best": {}}) == "optimize"
    assert result_kind({"analysis": {}, "runs": []}) == "study"
    assert result_kind({"mixtures": {}, "summary": {}, "runs": []}) == "confirm"
    assert result_kind({"hello": 1}) is None and result_kind([1]) is None
    # a kind says it, whatever else the file holds
    assert result_kind({"kind": "study", "trials": [], "best": {}}) == "study"


def test_a_result_is_written_whole(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"kind": "optimize", "x": [1, 2]})
    assert json.loads(path.read_text()) == {"kind": "optimize", "x": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind
