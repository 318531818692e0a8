"""User errors through the real CLI: exit 2, one line naming the culprit, nothing written."""

import pytest

from .helpers import SMOKE


def _assert_user_error(proc, *needles, cwd):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("allocator: error:"), proc.stderr
    for n in needles:
        assert n in lines[-1], lines[-1]
    assert not (cwd / "mlflow.db").exists(), "a user error must not create an MLflow store"
    assert not (cwd / "allocator_runs").exists()
    assert not (cwd / "out.json").exists()


@pytest.mark.parametrize(
    ("yaml_text", "needles"),
    [
        ("budgett: 100\n", ["bad.yaml", "budgett", "unknown key"]),
        ("budget: -3\n", ["bad.yaml", "budget", "greater than 0"]),
        ("search:\n  sampler: annealing\n", ["bad.yaml", "search.sampler"]),
    ],
)
def test_malformed_config(tmp_path, run_cli, yaml_text, needles):
    (tmp_path / "bad.yaml").write_text(yaml_text)
    proc = run_cli("optimize", "--config", "bad.yaml", "--output", "out.json", cwd=tmp_path)
    _assert_user_error(proc, *needles, cwd=tmp_path)


def test_missing_config_file(tmp_path, run_cli):
    proc = run_cli("optimize", "--config", "nope.yaml", cwd=tmp_path)
    _assert_user_error(proc, "nope.yaml", "not found", cwd=tmp_path)


def test_negative_budget_flag(tmp_path, run_cli):
    proc = run_cli("optimize", "--budget", "-5", cwd=tmp_path)
    _assert_user_error(proc, "budget", "greater than 0", cwd=tmp_path)


def test_budget_beyond_the_pool(tmp_path, call_cli):
    # the smoke config's small pool: the check is the same, the pool is built in a second; the
    # CLI's entry point in this process (its imports cost a new interpreter seconds)
    proc = call_cli("optimize", "--config", str(SMOKE), "--budget", "1000000", cwd=tmp_path)
    _assert_user_error(proc, "budget", "1,000,000", "the pool holds 700", cwd=tmp_path)


def test_unusable_tracking_uri(tmp_path, call_cli):
    proc = call_cli("optimize", "--config", str(SMOKE), "--tracking-uri", "ftp://x", cwd=tmp_path)
    _assert_user_error(proc, "--tracking-uri ftp://x", cwd=tmp_path)


def test_output_folder_missing(tmp_path, run_cli):
    proc = run_cli("optimize", "--output", "no/dir/out.json", cwd=tmp_path)
    _assert_user_error(proc, "--output", "does not exist", cwd=tmp_path)


def test_bad_flag_value(tmp_path, run_cli):
    proc = run_cli("optimize", "--trials", "lots", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
