"""Hostile and malformed input, one table: each case writes its files into an empty folder,
runs the CLI's entry point there, and expects exit 2, an error naming the culprit, and nothing
written. tests/test_hostile_input.py runs every case; experiments/hostile_inputs.py prints the
table of docs/RELIABILITY.md from the same cases, with the messages they give."""

from __future__ import annotations

import atexit
import functools
import gzip
import json
import pickle
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .helpers import SMOKE

__all__ = ["CASES", "Case", "run_case"]


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # data, config, CLI, cluster, tracking
    what: str  # the hostile input, as the table says it
    args: list[str]
    needles: list[str]  # every one is in the error line
    files: dict[str, bytes | str] = field(default_factory=dict)
    # a case that needs a live object (a socket that never answers) sets it up and returns
    # what to close afterwards
    setup: Callable[[Path], Any] | None = None


def _rows(n: int = 12, **extra: Any) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append({"q": f"add {i}+1", "a": str(i + 1), "kind": "arith", **extra})
        rows.append({"q": f"repeat ab{i}", "a": f"ab{i}", "kind": "copy", **extra})
    return rows


def _jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _config(
    data: dict[str, Any] | None = None, path: str = "train.jsonl", source: dict[str, Any] | None = None, **top: Any
) -> str:
    src = {"path": path, "format": "fields", "columns": {"prompt": "q", "response": "a"}, "ability_field": "kind"}
    src.update(source or {})
    cfg = {
        "budget": 10,
        "trials": 1,
        "data": {"sources": [src], "heldout_size": 2, **(data or {})},
        "model": {"tokenizer": "char", "max_length": 48},
        **top,
    }
    return yaml.safe_dump(cfg, allow_unicode=True)


def _optimize(*extra: str) -> list[str]:
    return ["optimize", "--config", "c.yaml", "--output", "out.json", *extra]


def _data(rows_text: str | bytes, *, data: dict[str, Any] | None = None, name: str = "train.jsonl") -> dict:
    return {name: rows_text, "c.yaml": _config(data, path=name)}


def _silent_server(folder: Path) -> Any:
    """A loopback port that accepts connections and never answers (a hung tracking server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    (folder / "port").write_text(str(sock.getsockname()[1]))
    return sock


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the case's folder ({dir}: MLflow caches a store by its URI, and a relative one would stay
# bound to the first folder it was opened in)
_STORE = "sqlite:///{dir}/mlflow.db"


@functools.cache
def _resume_template() -> Path:
    """A store with three jobs --resume must refuse (built once, copied into each case's
    folder): one finished, one that ran another config, and one whose sampler's state is not
    the file it wrote (a pickle that would write a file if it were ever unpickled)."""
    from mlflow import MlflowClient

    from allocator.config import resolve_config
    from allocator.trial import resume as rs

    folder = Path(tempfile.mkdtemp(prefix="allocator-resume-cases-"))
    atexit.register(shutil.rmtree, folder, True)
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.create_experiment("allocator", artifact_location=str(folder / "mlartifacts"))
    digest = rs.config_digest({**resolve_config(SMOKE, {}).to_dict(), "job": {}})  # the smoke config's
    state = folder / "job" / "allocator-state"
    state.mkdir(parents=True)
    (state / "state-1.pkl").write_bytes(pickle.dumps(_Pwn()))
    tags = {"allocator.kind": "optimize", rs.STORAGE_TAG: str(folder / "job"), rs.DRIVER_TAG: "gone 1"}
    for name, status, more in (
        ("finished", "FINISHED", {rs.CONFIG_TAG: digest}),
        ("other", "KILLED", {rs.CONFIG_TAG: "0" * 16}),
        ("tampered", "KILLED", {rs.CONFIG_TAG: digest, rs.STATE_TAG: "state-1.pkl sha256:" + "0" * 64}),
    ):
        run = client.create_run(exp, tags={**tags, **more}, run_name=f"optimize-{name}")
        client.set_terminated(run.info.run_id, status)
        (folder / f"{name}.id").write_text(run.info.run_id)
    return folder


class _Pwn:
    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (Path("pwned"), "unpickled"))


def _store(job: str | None, *, deleted: str | None = None) -> Callable[[Path], Any]:
    def setup(folder: Path) -> None:
        template = _resume_template()
        for part in template.glob("mlflow.db*"):  # (SQLite's write-ahead log too)
            shutil.copy(part, folder / part.name)
        if job is not None:
            (folder / "run_id").write_text((template / f"{job}.id").read_text())
        if deleted is not None:
            from mlflow import MlflowClient

            MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").delete_run((template / f"{deleted}.id").read_text())

    return setup


def _resume(*extra: str) -> list[str]:
    return ["optimize", "--config", str(SMOKE), "--tracking-uri", _STORE, "--resume", *extra]


_smoke = str(SMOKE)
_gz_truncated = gzip.compress(_jsonl(_rows()).encode())[:60]

CASES: list[Case] = [
    # -- config --------------------------------------------------------------------------
    Case(
        "unknown-key",
        "config",
        "a misspelt key",
        _optimize(),
        ["c.yaml", "budgett", "unknown key"],
        {"c.yaml": "budgett: 100\n"},
    ),
    Case(
        "negative-budget",
        "config",
        "budget: -3",
        _optimize(),
        ["c.yaml", "budget", "greater than 0"],
        {"c.yaml": "budget: -3\n"},
    ),
    Case(
        "bad-enum",
        "config",
        "an unknown sampler",
        _optimize(),
        ["c.yaml", "search.sampler"],
        {"c.yaml": "search:\n  sampler: annealing\n"},
    ),
    Case(
        "python-object-yaml",
        "config",
        "YAML that constructs a Python object (`!!python/object/apply:os.system`)",
        _optimize(),
        ["c.yaml", "line 1", "invalid YAML", "python/object"],
        {"c.yaml": '!!python/object/apply:os.system ["touch pwned"]\n'},
    ),
    Case(
        "yaml-syntax",
        "config",
        "broken YAML (an unclosed bracket)",
        _optimize(),
        ["c.yaml", "line 3", "invalid YAML"],
        {"c.yaml": "budget: 10\nsearch: {sampler: tpe\n"},
    ),
    Case(
        "not-a-mapping",
        "config",
        "a YAML list at the top",
        _optimize(),
        ["c.yaml", "expected a mapping", "list"],
        {"c.yaml": "- budget\n- 10\n"},
    ),
    Case(
        "config-missing",
        "config",
        "a config path that does not exist",
        ["optimize", "--config", "nope.yaml"],
        ["nope.yaml", "not found"],
    ),
    Case(
        "config-binary",
        "config",
        "a binary file as config (PNG bytes)",
        _optimize(),
        ["c.yaml", "not UTF-8"],
        {"c.yaml": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"},
    ),
    Case(
        "config-latin1",
        "config",
        "a Latin-1 config",
        _optimize(),
        ["c.yaml", "not UTF-8"],
        {"c.yaml": "experiment: caf\xe9\n".encode("latin-1")},
    ),
    Case(
        "config-huge",
        "config",
        "a 3 MB config",
        _optimize(),
        ["c.yaml", "MB", "a config is a few KB"],
        {"c.yaml": "# " + "x" * 3_000_000 + "\nbudget: 10\n"},
    ),
    Case(
        "experiment-name-long",
        "config",
        "an MLflow experiment name of 600 characters",
        _optimize(),
        ["c.yaml", "tracking.experiment", "at most 500 characters"],
        {"c.yaml": yaml.safe_dump({"tracking": {"experiment": "e" * 600}})},
    ),
    Case(
        "remote-code",
        "config",
        "a model folder whose config needs its own code, trust_remote_code off",
        _optimize(),
        ["config.json", "trust_remote_code"],
        {
            "c.yaml": "model:\n  name_or_path: ./m\n",
            "m/config.json": json.dumps(
                {"model_type": "my_own", "auto_map": {"AutoModelForCausalLM": "modeling_x.X"}, "architectures": ["X"]}
            ),
        },
    ),
    Case(
        "model-missing",
        "config",
        "model.name_or_path a folder that does not exist (offline)",
        _optimize(),
        ["no-such-model"],
        {"c.yaml": "model:\n  name_or_path: ./no-such-model\n"},
    ),
    # -- CLI -----------------------------------------------------------------------------
    Case(
        "negative-budget-flag",
        "CLI",
        "--budget -5",
        ["optimize", "--config", _smoke, "--budget", "-5"],
        ["budget", "greater than 0"],
    ),
    Case(
        "budget-beyond-pool",
        "CLI",
        "--budget 1000000 on a pool of 700",
        ["optimize", "--config", _smoke, "--budget", "1000000"],
        ["budget", "1,000,000", "the pool holds 700"],
    ),
    Case(
        "output-folder-missing",
        "CLI",
        "--output into a folder that does not exist",
        ["optimize", "--config", _smoke, "--output", "no/dir/out.json"],
        ["--output", "does not exist"],
    ),
    Case(
        "output-is-folder",
        "CLI",
        "--output naming an existing folder",
        ["optimize", "--config", _smoke, "--output", "d"],
        ["--output", "is a folder"],
        {"d/keep": ""},
    ),
    Case(
        "warm-start-missing",
        "CLI",
        "--warm-start a file that does not exist",
        ["optimize", "--config", _smoke, "--warm-start", "nope.json"],
        ["nope.json"],
    ),
    Case(
        "from-binary",
        "CLI",
        "recommend --from a binary file",
        ["recommend", "--from", "r.json", "--budget", "10"],
        ["r.json"],
        {"r.json": b"\x00\x01\x02\xff"},
    ),
    Case(
        "from-wrong-json",
        "CLI",
        "recommend --from a JSON that is not a result",
        ["recommend", "--from", "r.json", "--budget", "10"],
        ["r.json"],
        {"r.json": "[1, 2, 3]"},
    ),
    # -- tracking ------------------------------------------------------------------------
    Case(
        "tracking-scheme",
        "tracking",
        "--tracking-uri ftp://x",
        ["optimize", "--config", _smoke, "--tracking-uri", "ftp://x"],
        ["--tracking-uri ftp://x"],
    ),
    Case(
        "tracking-folder-missing",
        "tracking",
        "--tracking-uri sqlite:///no/such/dir/mlflow.db",
        ["optimize", "--config", _smoke, "--tracking-uri", "sqlite:///no/such/dir/mlflow.db"],
        ["--tracking-uri", "does not exist"],
    ),
    Case(
        "tracking-refused",
        "tracking",
        "--tracking-uri http://127.0.0.1:PORT with nothing listening",
        ["optimize", "--config", _smoke, "--tracking-uri", f"http://127.0.0.1:{_free_port()}"],
        ["--tracking-uri", "no MLflow server answers"],
    ),
    Case(
        "tracking-silent",
        "tracking",
        "--tracking-uri a server that accepts and never answers",
        ["optimize", "--config", _smoke, "--tracking-uri", "http://127.0.0.1:{port}"],
        ["--tracking-uri", "no answer within"],
        setup=_silent_server,
    ),
    # -- cluster -------------------------------------------------------------------------
    Case(
        "ray-address-malformed",
        "cluster",
        "--ray-address foo",
        ["optimize", "--config", _smoke, "--ray-address", "foo"],
        ["--ray-address", "expected HOST:PORT"],
    ),
    Case(
        "ray-address-refused",
        "cluster",
        "--ray-address 127.0.0.1:PORT with nothing listening",
        ["optimize", "--config", _smoke, "--ray-address", f"127.0.0.1:{_free_port()}"],
        ["--ray-address", "cannot connect", "refused"],
    ),
    Case(
        "ray-address-unknown-host",
        "cluster",
        "--ray-address no-such-host.invalid:6379",
        ["optimize", "--config", _smoke, "--ray-address", "no-such-host.invalid:6379"],
        ["--ray-address", "unknown host"],
    ),
    Case(
        "ray-address-not-ray",
        "cluster",
        "--ray-address a server that is not Ray's (it never answers)",
        ["optimize", "--config", _smoke, "--ray-address", "127.0.0.1:{port}"],
        ["--ray-address", "no answer"],
        setup=_silent_server,
    ),
    # -- data ----------------------------------------------------------------------------
    Case(
        "data-missing",
        "data",
        "a data path that does not exist",
        _optimize(),
        ["nope.jsonl"],
        {"c.yaml": _config(path="nope.jsonl")},
    ),
    Case(
        "data-binary",
        "data",
        "a binary data file",
        _optimize(),
        ["train.jsonl", "line 1", "not UTF-8"],
        _data(b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00"),
    ),
    Case(
        "data-latin1",
        "data",
        "a Latin-1 row",
        _optimize(),
        ["train.jsonl", "line 3", "not UTF-8"],
        _data(_jsonl(_rows(1)).encode() + '{"q": "caf\xe9", "a": "x", "kind": "arith"}\n'.encode("latin-1")),
    ),
    Case(
        "data-huge-line",
        "data",
        "a line of 3 million characters (limit data.max_line_chars, 1M)",
        _optimize(),
        ["train.jsonl", "line 1", "over the limit"],
        _data('{"q": "' + "x" * 3_000_000 + '"}\n'),
    ),
    Case(
        "data-one-line-file",
        "data",
        "a 30 MB file that is one line (read no further than the limit)",
        _optimize(),
        ["train.jsonl", "line 1", "more than 1,000,000 characters"],
        _data(b'{"q": "' + b"x" * 30_000_000),
    ),
    Case(
        "data-bad-json",
        "data",
        "invalid JSON on row 3",
        _optimize(),
        ["train.jsonl", "line 3", "invalid JSON"],
        _data(_jsonl(_rows(1)) + '{"q": oops}\n'),
    ),
    Case(
        "data-not-object",
        "data",
        "a JSON array where a row should be",
        _optimize(),
        ["train.jsonl", "line 1", "expected a JSON object"],
        _data("[1, 2]\n"),
    ),
    Case(
        "data-field-missing",
        "data",
        "a row without its response field",
        _optimize(),
        ["train.jsonl", "row 3", "'a'"],
        _data(_jsonl([*_rows(1), {"q": "x", "kind": "arith"}])),
    ),
    Case(
        "data-label-not-string",
        "data",
        "an ability label that is a number",
        _optimize(),
        ["train.jsonl", "row 1", "'kind'", "expected a string label"],
        _data(_jsonl([{"q": "x", "a": "y", "kind": 7}])),
    ),
    Case(
        "gzip-truncated",
        "data",
        "a truncated .gz file",
        _optimize(),
        ["train.jsonl.gz", "cannot decompress"],
        _data(_gz_truncated, name="train.jsonl.gz"),
    ),
    Case(
        "gzip-misnamed",
        "data",
        "gzip bytes in a file named .jsonl",
        _optimize(),
        ["train.jsonl", "gzip-compressed"],
        _data(gzip.compress(b"{}\n")),
    ),
    Case(
        "labels-case",
        "data",
        "labels 'Math' and 'math ' (equal once case and spaces are folded)",
        _optimize(),
        ["'Math'", "'math '", "train.jsonl:row", "ability_map"],
        _data(_jsonl([*_rows(), *({"q": f"{i}", "a": "x", "kind": k} for i in range(6) for k in ("Math", "math "))])),
    ),
    Case(
        "labels-nfkc",
        "data",
        "labels 'math' and its fullwidth form (equal after NFKC)",
        _optimize(),
        ["differ only in case, spaces or Unicode form"],
        _data(
            _jsonl(
                [*({"q": f"{i}", "a": "x", "kind": k} for i in range(6) for k in ("math", "\uff4d\uff41\uff54\uff48"))]
            )
        ),
    ),
    Case(
        "label-control",
        "data",
        "a label with a terminal escape sequence",
        _optimize(),
        ["contains the control character U+001B"],
        _data(_jsonl([*_rows(), *({"q": f"{i}", "a": "x", "kind": "red\x1b[31m"} for i in range(6))])),
    ),
    Case(
        "ability-too-small",
        "data",
        "an ability with fewer rows than the held-out size",
        _optimize(),
        ["'tiny'", "held-out"],
        _data(_jsonl([*_rows(), {"q": "x", "a": "y", "kind": "tiny"}])),
    ),
    Case(
        "one-ability",
        "data",
        "a file of one ability",
        _optimize(),
        ["1 ability found", "a mixture needs 2"],
        _data(_jsonl([r for r in _rows() if r["kind"] == "copy"])),
    ),
    Case(
        "map-absent-label",
        "data",
        "ability_map naming a label the file lacks",
        _optimize(),
        ["ability_map", "'mathz'", "does not occur"],
        {
            "train.jsonl": _jsonl(_rows()),
            "c.yaml": _config(source={"ability_map": {"mathz": "math"}}),
        },
    ),
    Case(
        "inspect-every-problem",
        "data",
        "data inspect of a file with two abilities too small and two labels alike: every problem, not the first",
        [
            "data",
            "inspect",
            "train.jsonl",
            "--prompt-field",
            "q",
            "--response-field",
            "a",
            "--ability-field",
            "kind",
            "--heldout",
            "2",
        ],
        ["train.jsonl", "3 problems"],
        {
            "train.jsonl": _jsonl(
                [
                    *_rows(),
                    *(
                        {"q": f"{i}{k}", "a": "x", "kind": k}
                        for i in range(3)
                        for k in ("Tiny", "tiny", "small")
                        if i < 2 or k == "Tiny"
                    ),
                ]
            )
        },
    ),
    Case(
        "inspect-config-every-problem",
        "data",
        "data inspect --config whose data has two abilities too small and data.metrics naming one it lacks: "
        "every problem, not the first",
        ["data", "inspect", "--config", "c.yaml"],
        ["c.yaml", "3 problems in its data"],
        {
            "train.jsonl": _jsonl(
                [*_rows(), *({"q": f"{i}{k}", "a": "x", "kind": k} for k in ("tiny", "small") for i in range(2))]
            ),
            "c.yaml": _config({"metrics": {"story": "loss"}}),
        },
    ),
    Case(
        "mapped-label-all-dropped",
        "data",
        "a mapped label whose rows all have an empty response (empty: drop), named in data.metrics",
        _optimize(),
        ["data.metrics", "'story'", "is gone: every one of its 4 rows was dropped"],
        {
            "train.jsonl": _jsonl([*_rows(), *({"q": f"{i}", "a": "", "kind": "tale"} for i in range(4))]),
            "c.yaml": _config(
                {"metrics": {"story": "loss"}}, source={"empty": "drop", "ability_map": {"tale": "story"}}
            ),
        },
    ),
    Case(
        "metrics-absent-ability",
        "data",
        "data.metrics naming an ability the data lacks",
        _optimize(),
        ["data.metrics", "'story'", "does not occur"],
        _data(_jsonl(_rows()), data={"metrics": {"story": "loss"}}),
    ),
    # -- resume --------------------------------------------------------------------------
    Case(
        "resume-no-store",
        "CLI",
        "--resume with a tracking store that does not exist",
        _resume(),
        ["--resume", "no store at", "mlflow.db: nothing to resume"],
    ),
    Case(
        "resume-unknown-run",
        "CLI",
        "--resume RUN_ID that the store does not have",
        _resume("0123456789abcdef"),
        ["--resume 0123456789abcdef", "no such run in sqlite:///", "/mlflow.db"],
        setup=_store(None),
    ),
    Case(
        "resume-finished",
        "CLI",
        "--resume RUN_ID of a job that finished",
        _resume("{run_id}"),
        ["--resume", "the job finished; there is nothing to resume"],
        setup=_store("finished"),
    ),
    Case(
        "resume-latest-none",
        "CLI",
        "--resume (the latest) where the jobs of this config finished or were deleted",
        _resume(),
        ["--resume", "no interrupted optimize job with this config", "give a RUN_ID"],
        setup=_store(None, deleted="tampered"),
    ),
    Case(
        "resume-other-config",
        "CLI",
        "--resume RUN_ID of a job that ran another config",
        _resume("{run_id}"),
        ["--resume", "the job ran another config", "same config and flags"],
        setup=_store("other"),
    ),
    Case(
        "resume-tampered-state",
        "CLI",
        "--resume RUN_ID whose sampler's state file is not the one its job wrote (a pickle that would run code)",
        _resume("{run_id}"),
        ["--resume", "state-1.pkl is not the file the job wrote", "SHA-256 differs", "not loaded"],
        setup=_store("tampered"),
    ),
]


def run_case(case: Case, folder: Path, main: Callable[[list[str]], int]) -> tuple[int, set[str]]:
    """Write the case's files into ``folder`` and run ``main`` (the CLI's entry point) on its
    arguments; the caller changed into ``folder`` and captures stderr. Returns the exit code and
    the files there before the run."""
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)  # type: ignore[operator]
    live = case.setup(folder) if case.setup is not None else None
    before = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    live_values = {k: (folder / k).read_text() for k in ("port", "run_id") if (folder / k).is_file()}
    live_values["dir"] = str(folder)
    args = list(case.args)
    for k, v in live_values.items():
        args = [a.replace("{" + k + "}", v) for a in args]
    try:
        try:
            code = main(args)
        except SystemExit as e:  # argparse's own errors
            code = int(e.code or 0)
    finally:
        if live is not None:
            live.close()
    return code, before
