"""Under load: the orchestration overhead, the throughput of 2 concurrent trials, and a study of
many short trials (docs/RELIABILITY.md, "Under load").

    .venv/bin/python experiments/load.py [--only throughput,overhead,study] [--keep DIR]

Each part runs the real CLI in its own folder, timestamps every line it prints, samples the
resident memory of its whole process tree (the driver, Ray's servers, the trial workers)
every half second, and reads the trials' own seconds from MLflow:

- ``overhead``: the embedded default ``allocator optimize`` on a warm model cache (the
  throughput part, run first, built the base). Overhead = ``1 - (sum of trial training+evaluation seconds /
  concurrency) / wall seconds``, where a trial's seconds are its ``perf/train_seconds`` and
  ``perf/eval_seconds`` (trainers.proxy: training steps and evaluations only; loading the model
  and data counts as overhead) and the wall is the whole CLI process. The same for the search
  phase alone (from the "searching" line to the last trial's line).
- ``throughput``: the embedded default with ``--trials 3`` (4 trials with the baseline), once
  with ``search.max_concurrent_trials: 1`` and once with 2, each trial on 1 thread: trials per
  second of the search phase, and the ratio (every trial trains the same number of steps).
- ``study``: ``allocator study`` on the smoke config over volumes 0, 4, 16 with 3 seeds
  (2 volumes x 8 designs x 3 seeds = 48 runs), asking for 8 at a time on a machine with 2
  CPUs (the runner runs 2, Tune queues the rest); every run must be FINISHED in MLflow with
  its objective.

Prints Markdown for docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(args: list[str], folder: Path, env: dict[str, str]) -> dict[str, Any]:
    """The CLI in ``folder``: its lines with their seconds, its wall seconds, the peak RSS of its
    process tree."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "allocator", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], _tree_rss(ps))
            except psutil.Error:
                return
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = []
    assert proc.stdout is not None
    with open(folder / "run.log", "w") as log:
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))
            log.write(f"{lines[-1][0]:8.1f} {line}")
    proc.wait()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        print("\n".join(text for _, text in lines[-40:]), file=sys.stderr)
        raise SystemExit(f"allocator {args[0]} exited {proc.returncode} (log: {folder / 'run.log'})")
    return {"lines": lines, "wall": wall, "peak_rss": peak[0]}


def _children(uri: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("allocator")
    runs = client.search_runs([exp.experiment_id], max_results=10_000)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _search_phase(r: dict[str, Any]) -> tuple[float, float, int]:
    """(seconds from the "searching" line to the last trial line, the concurrency it named,
    the trial lines)."""
    start = next(t for t, text in r["lines"] if text.startswith("searching "))
    conc = int(next(text for _, text in r["lines"] if text.startswith("searching ")).split(", ")[-1].split()[0])
    ended = [t for t, text in r["lines"] if "FINISHED" in text or " FAILED" in text]
    return ended[-1] - start, conc, len(ended)


def _work_seconds(children: list[Any]) -> float:
    return sum(
        r.data.metrics.get("perf/train_seconds", 0) + r.data.metrics.get("perf/eval_seconds", 0) for r in children
    )


def overhead(work: Path, env: dict[str, str]) -> None:
    uri = f"sqlite:///{work / 'overhead' / 'mlflow.db'}"
    r = run(["optimize", "--tracking-uri", uri, "--output", "out.json"], work / "overhead", env)
    if any(text.startswith("building the base model") for _, text in r["lines"]):
        raise SystemExit("the model cache was cold: run the throughput part first (the default order)")
    children = _children(uri)
    phase, conc, n = _search_phase(r)
    busy = _work_seconds(children) / conc
    print("### Orchestration overhead (embedded default, warm model cache)\n")
    print("    allocator optimize --tracking-uri sqlite:///.../mlflow.db --output out.json\n")
    print(f"- {n} trials, {conc} at a time, every one FINISHED: {all(c.info.status == 'FINISHED' for c in children)}")
    print(f"- wall {r['wall']:.1f} s (the whole CLI process); search phase {phase:.1f} s")
    print(f"- trials' training + evaluation: {_work_seconds(children):.1f} s in all, {busy:.1f} s per slot")
    print(f"- **overhead {1 - busy / r['wall']:.1%}** of the wall; {1 - busy / phase:.1%} of the search phase")
    print(f"- peak RSS of the process tree {r['peak_rss'] / 2**30:.2f} GiB\n")


def throughput(work: Path, env: dict[str, str]) -> None:
    base = yaml.safe_load((ROOT / "experiments" / "default.yaml").read_text())
    rates = {}
    print("### Throughput, 2 concurrent 1-thread trials vs 1\n")
    for conc in (1, 2):
        folder = work / f"throughput-{conc}"
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {**base, "trials": 3, "search": {**base["search"], "max_concurrent_trials": conc}}
        (folder / "c.yaml").write_text(yaml.safe_dump(cfg))
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        r = run(["optimize", "--config", "c.yaml", "--tracking-uri", uri, "--output", "out.json"], folder, env)
        phase, named, n = _search_phase(r)
        assert named == conc, (named, conc)
        rates[conc] = n / phase
        work_s = _work_seconds(_children(uri)) / n
        print(
            f"- {conc} at a time: {n} trials in {phase:.1f} s of search ({rates[conc] * 60:.2f} trials/min; "
            f"training + evaluation {work_s:.1f} s a trial), wall {r['wall']:.1f} s, "
            f"peak RSS {r['peak_rss'] / 2**30:.2f} GiB"
        )
    print(
        f"- **2 concurrent / 1: {rates[2] / rates[1]:.2f}x** (the embedded default, `trials: 3`, "
        "`search.max_concurrent_trials` 1 and 2)\n"
    )


def study(work: Path, env: dict[str, str]) -> None:
    folder = work / "study"
    folder.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((ROOT / "experiments" / "smoke.yaml").read_text())
    cfg["study"] = {"volumes": [0, 4, 16], "seeds": 3, "bootstrap": 50}
    # more at once than the machine has CPUs: the runner runs what fits, Tune queues the rest
    cfg["search"] = {**cfg.get("search", {}), "max_concurrent_trials": 8}
    (folder / "c.yaml").write_text(yaml.safe_dump(cfg))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    r = run(["study", "--config", "c.yaml", "--tracking-uri", uri, "--output", "s.json"], folder, env)
    children = _children(uri)
    ok = [c for c in children if c.info.status == "FINISHED" and "objective" in c.data.metrics]
    announced = next(text for _, text in r["lines"] if "at a time" in text)
    print("### A study of many short trials, more asked at once than there are CPUs\n")
    print("    allocator study --config c.yaml (smoke config, study.volumes [0, 4, 16], seeds 3,")
    print("    search.max_concurrent_trials 8)\n")
    print(f"- the job says: `{announced.strip()}`")
    print(f"- {len(children)} runs in MLflow, {len(ok)} FINISHED with their objective")
    print(f"- wall {r['wall']:.1f} s; peak RSS of the process tree {r['peak_rss'] / 2**30:.2f} GiB\n")


def main() -> int:
    p = argparse.ArgumentParser()
    # (in this order the throughput runs build the default's base first: the overhead run's
    # cache is warm, and a search phase never includes the build)
    p.add_argument("--only", default="throughput,overhead,study")
    p.add_argument("--keep", help="run in this folder (kept) instead of a temporary one")
    args = p.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="allocator-load-"))
    env = {**os.environ, "ALLOCATOR_CACHE_DIR": str(work / "cache"), "PYTHONUNBUFFERED": "1"}
    parts = args.only.split(",")
    print(f"On {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}; folders under {work}\n")
    for part in parts:
        {"overhead": overhead, "throughput": throughput, "study": study}[part](work, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
