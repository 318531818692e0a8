"""The experiment scripts' own logic, where it is more than a call of the package."""

import json
import sys

import pytest

from .helpers import ROOT


def _reference_runs():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import reference_runs
    finally:
        sys.path.pop(0)
    return reference_runs


def test_reference_runs_compare_what_must_not_change_and_name_what_did(tmp_path, capsys):
    ref = _reference_runs()
    result = {"best": {"objective": 0.5, "seconds": 3.0, "mlflow_run_id": "abc"}, "trials": [{"mixture": {"a": 2}}]}
    assert ref.clean(result) == {"best": {"objective": 0.5}, "trials": [{"mixture": {"a": 2}}]}
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    (tmp_path / "before" / "x.json").write_text(json.dumps(ref.clean(result)))
    (tmp_path / "after" / "x.json").write_text(
        json.dumps(ref.clean({**result, "best": {"objective": 0.5, "seconds": 9}}))
    )
    assert ref.compare(tmp_path / "before", tmp_path / "after") == 0
    (tmp_path / "after" / "x.json").write_text(json.dumps({"best": {"objective": 0.6}, "trials": [{"mixture": {}}]}))
    assert ref.compare(tmp_path / "before", tmp_path / "after") == 1
    out = capsys.readouterr().out
    assert "/best/objective: 0.5 vs 0.6" in out and "/trials[0]/mixture/a: only in one" in out


@pytest.mark.slow  # ~40 s on 2 cores: every phase of the GPU check at CPU size
def test_the_gpu_check_runs_every_phase_at_cpu_size(tmp_path):
    import os
    import subprocess

    env = {**os.environ, "OUT": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "gpu_check.py"), "--tiny"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    phases = {r["phase"] for r in rows}
    assert {"env", "build", "data", "proxy_lora", "proxy_qlora", "proxy_full", "multi", "summary"} <= phases, phases
    assert all(r["status"] in ("ok", "cut", "skipped") for r in rows), rows
