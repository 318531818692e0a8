"""Every hostile input of tests/hostile.py through the CLI's entry point in this process:
exit 2, one error line naming the file, row or field, no traceback, nothing written."""

import pytest

from .hostile import CASES, Case, run_case


def test_the_table_holds_at_least_30_cases_with_distinct_ids():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_a_clear_user_error_and_writes_nothing(case: Case, tmp_path, monkeypatch, capsys, cache_dir):
    from allocator.cli import main

    monkeypatch.chdir(tmp_path)
    code, before = run_case(case, tmp_path, main)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[-3000:]
    assert "Traceback" not in err and lines and lines[-1].startswith("allocator: error:"), err[-3000:]
    for needle in case.needles:
        assert needle in lines[-1], lines[-1]
    after = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    assert after - before == set(), f"written by a refused run: {sorted(after - before)}"
