"""User errors through the installed command in a new process (the table of hostile input
runs in this process: tests/test_hostile_input.py): exit 2, one line, nothing written."""


def test_missing_config_file(tmp_path, run_cli):
    proc = run_cli("optimize", "--config", "nope.yaml", "--output", "out.json", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr and lines[-1] == "allocator: error: nope.yaml: config file not found"
    assert list(tmp_path.iterdir()) == []


def test_bad_flag_value(tmp_path, run_cli):
    proc = run_cli("optimize", "--trials", "lots", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "argument --trials: invalid int value: 'lots'" in proc.stderr
    assert list(tmp_path.iterdir()) == []
