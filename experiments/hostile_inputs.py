"""The hostile-input table of docs/RELIABILITY.md, from the cases tests/test_hostile_input.py
runs (tests/hostile.py): each case in an empty folder through the CLI's entry point, with its
exit code, its error line, whether it wrote anything, and its seconds.

    .venv/bin/python experiments/hostile_inputs.py > /tmp/hostile.md

Prints a Markdown table; the last line says how many cases gave exit 2 with nothing written.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

for k, v in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}.items():
    os.environ.setdefault(k, v)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from allocator.cli import main  # noqa: E402 (after the environment and the path)
from tests.hostile import CASES, run_case  # noqa: E402


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main_table() -> int:
    print("| # | kind | hostile input | exit | nothing written | seconds | message |")
    print("|---|---|---|---|---|---|---|")
    ok = 0
    home = Path.cwd()
    for i, case in enumerate(CASES, start=1):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            os.chdir(folder)
            err = io.StringIO()
            t = time.perf_counter()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code, before = run_case(case, folder, main)
            seconds = time.perf_counter() - t
            after = {str(p.relative_to(folder)) for p in folder.rglob("*")}
            os.chdir(home)
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        last = lines[-1].removeprefix("allocator: error: ") if lines else "(no message)"
        clean = after == before
        ok += code == 2 and clean and "Traceback" not in err.getvalue()
        written = "yes" if clean else f"no: {', '.join(sorted(after - before))}"
        print(f"| {i} | {case.kind} | {_cell(case.what)} | {code} | {written} | {seconds:.1f} | {_cell(last)} |")
    print(f"\n{ok} of {len(CASES)} cases: exit 2, one error line, no traceback, nothing written")
    return 0 if ok == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main_table())
