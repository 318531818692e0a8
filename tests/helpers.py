"""Helpers the tests share, defined once: paths, the smoke and user-data configs, reading a
CLI run's result, and the MLflow store of a job."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.yaml"  # a seconds-long run of the whole path
SUITE = ["first", "copy", "upper", "sort", "count", "add", "reverse"]  # the built-in abilities, in order
T0 = ROOT.parent / "shared" / "data" / "t0-mixture-55k.jsonl.gz"


def succeeded(proc: subprocess.CompletedProcess, output: Path) -> dict:
    """Assert that a CLI run exited 0 (its output tails as the message) and read the JSON it
    wrote with ``--output``, which must be strict JSON (no NaN or inf)."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(output.read_text())
    json.dumps(result, allow_nan=False)
    return result


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def data_rows(n: int = 40, seed: int = 0) -> list[dict[str, str]]:
    """Three abilities of ``n`` rows each (arithmetic, copying, short stories) and one junk row."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        rows.append({"q": f"add {a}+{b}", "a": str(a + b), "kind": "arith"})
        w = "".join(rng.choice("abcdef") for _ in range(rng.randint(3, 6)))
        rows.append({"q": f"repeat {w}", "a": w, "kind": "copying"})
        rows.append({"q": f"tell a story about {w}", "a": f"once {w} met {w[::-1]} and they sang", "kind": "tale"})
    rows.append({"q": "odd one", "a": "x", "kind": "junk"})
    return rows


def data_config(tmp_path: Path, data_overrides: dict | None = None, **top: Any) -> Path:
    """A config of user data (``data_rows``; ``tale`` becomes ``story``, scored by held-out
    loss, ``copying`` has its own held-out file) with a BPE tokenizer; written next to its data."""
    train = write_jsonl(tmp_path / "train.jsonl", data_rows())
    held = write_jsonl(tmp_path / "copy-eval.jsonl", [{"q": "repeat abc", "a": "abc"}, {"q": "repeat fed", "a": "fed"}])
    cols, amap = {"prompt": "q", "response": "a"}, {"junk": None, "tale": "story"}
    data = {
        "sources": [
            {"path": train.name, "format": "fields", "columns": cols, "ability_field": "kind", "ability_map": amap},
            {"path": held.name, "format": "fields", "columns": cols, "ability": "copying", "split": "heldout"},
        ],
        "heldout_size": 4,
        "metrics": {"story": "loss"},
        **(data_overrides or {}),
    }
    cfg = {
        "budget": 1200,
        "budget_unit": "tokens",
        "trials": 1,
        "data": data,
        "model": {"tokenizer": "bpe", "vocab_size": 300, "max_length": 48},
        "pretrain": {"steps": 10, "corpus": "data"},
        "proxy": {"epochs": 1, "max_new_tokens": 6},
        "search": {"n_startup_trials": 1},
        **top,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def loss_config(tmp_path: Path, *, search: dict | None = None, **top: Any) -> dict[str, Any]:
    """A config (as a dict) whose objective moves with the mixture: the user data of
    ``data_rows``, ``copying`` and ``story`` scored by held-out loss, 90 examples. The smoke
    suite's exact matches are all 0 at its sizes, which would make every trial tie. One trial
    at a time (deterministic: Tune starts them in order), MLflow and Tune results in ``tmp_path``."""
    path = data_config(tmp_path, {"metrics": {"story": "loss", "copying": "loss", "arith": "loss"}})
    cfg = yaml.safe_load(path.read_text())
    for src in cfg["data"]["sources"]:
        src["path"] = str(tmp_path / src["path"])
    cfg.update(
        budget=90,
        budget_unit="examples",
        trials=4,
        pretrain={"steps": 10, "corpus": "data"},
        proxy={"epochs": 4, "max_new_tokens": 6},
        search={"n_startup_trials": 1, "max_concurrent_trials": 1, **(search or {})},
        tracking={"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        storage_path=str(tmp_path / "runs"),
    )
    cfg.update(top)
    return cfg


def job_runs(uri: str, parent_id: str) -> tuple[Any, dict[str, Any]]:
    """A job's MLflow parent run and its child runs by run id."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return parent, {r.info.run_id: r for r in children}


# a synthetic study's truth: "sat" saturates fast, "grow" grows log-linearly, "flat" resists;
# training on "grow" alone gives "sat" half of what its own data would
def _truth() -> dict[str, Any]:
    import numpy as np

    return {
        "sat": lambda v: 0.6 * (1 - np.exp(-v / 6)),
        "grow": lambda v: 0.06 * np.log2(1 + v),
        "flat": lambda v: 0.0 * v,
    }


SYNTHETIC_TRANSFER = {("sat", "grow"): 0.5}
SYNTHETIC_VOLUMES = [0, 4, 16, 64, 256]


def synthetic_study(seeds: int = 3, sd: float = 0.01) -> tuple[Any, list[str], list[dict[str, Any]]]:
    """``(study config, abilities, run records)`` of a study of the synthetic truth above,
    with Gaussian noise of ``sd`` on every score."""
    import numpy as np

    from allocator.config import StudyConfig
    from allocator.studies.specs import run_specs

    truth = _truth()
    rng = np.random.default_rng(0)
    abilities = list(truth)
    cfg = StudyConfig(volumes=SYNTHETIC_VOLUMES, seeds=seeds, bootstrap=40)
    records = []
    for spec in run_specs(cfg, abilities, dict.fromkeys(abilities, 1000), 0):
        scores = {}
        for a in abilities:
            own = truth[a](spec.mixture[a])
            others = sum(SYNTHETIC_TRANSFER.get((a, b), 0.0) * truth[a](spec.mixture[b]) for b in abilities if b != a)
            scores[a] = float(own + others + rng.normal(0, sd))
        records.append({**spec.to_dict(), "scores": scores, "status": "FINISHED"})
    return cfg, abilities, records


def study_result(cfg: Any, abilities: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The parts of a study result that ``recommend`` reads, from synthetic runs."""
    from allocator.studies.analysis import analyze

    return {
        "abilities": abilities,
        "weights": dict.fromkeys(abilities, 1.0),
        "caps": dict.fromkeys(abilities, 1000),
        "analysis": analyze(records, abilities, cfg, seeds=cfg.seeds),
    }


# a synthetic mixture landscape with known saturating curves (fast, slow, capped low, nearly
# linear) for the growth-curve model and sampler; a search of it at BUDGET examples
GAIN = {"a": 0.9, "b": 0.8, "c": 0.3, "d": 0.7}
SCALE = {"a": 30.0, "b": 300.0, "c": 50.0, "d": 2000.0}
BUDGET = 800
CAPS = {a: 600 for a in GAIN}


def true_score(a: str, n: float) -> float:
    import math

    return GAIN[a] * (1.0 - math.exp(-n / SCALE[a]))


def true_objective(counts: dict[str, float]) -> float:
    return sum(true_score(a, counts[a]) for a in GAIN) / len(GAIN)


def greedy_optimum(budget: int, caps: dict[str, int]) -> dict[str, int]:
    """The landscape's optimum by another method than the one under test: the curves are
    concave and separable, so handing out one example at a time to the largest marginal gain
    is exact."""
    counts = dict.fromkeys(GAIN, 0)
    for _ in range(budget):
        a = max(
            (a for a in GAIN if counts[a] < caps[a]),
            key=lambda a: true_score(a, counts[a] + 1) - true_score(a, counts[a]),
        )
        counts[a] += 1
    return counts


# a threshold landscape: two abilities that saturate early, and one (t) that scores nothing
# below 400 examples and nearly everything from there (what a tiny proxy does with copying)
STEP = {"a": 30.0, "b": 60.0}


def step_scores(counts: dict[str, float]) -> dict[str, float]:
    import math

    scores = {a: 0.95 * (1.0 - math.exp(-counts[a] / s)) for a, s in STEP.items()}
    return {**scores, "t": 0.9 if counts["t"] >= 400 else 0.0}


def synthetic_tune_trial(config: dict) -> None:
    """A Ray Tune trainable that reports like the proxy's trial does (two evaluations, the
    first at half the steps and half the score) on the synthetic landscape's truth."""
    from ray import tune

    from allocator.mixture import counts_from_point

    counts = counts_from_point({a: config[f"u_{a}"] for a in GAIN}, BUDGET, CAPS)
    scores = {a: true_score(a, counts[a]) for a in GAIN}
    for step, part in ((5, 0.5), (10, 1.0)):
        metrics = {f"score/{a}": part * s for a, s in scores.items()}
        metrics.update({f"loss/{a}": 1.0 - part * s for a, s in scores.items()})
        objective = part * sum(scores.values()) / len(scores)
        tune.report({"step": step, "steps_total": 10, "objective": objective, **metrics})


def scored_search(sampler: Any, first: list[dict[str, float]]) -> Any:
    """The search's Optuna searcher over the synthetic landscape's mixture space, as a search
    builds it: two evaluations a trial, the points ``first`` (``{ability: u}``) tried first."""
    from allocator.search.extensions import ScoredOptunaSearch
    from allocator.search.sampler import SCORES_ATTR

    return ScoredOptunaSearch(
        list(GAIN),
        2,
        scores_attr=SCORES_ATTR,
        metric="objective",
        mode="max",
        sampler=sampler,
        points_to_evaluate=[{f"u_{a}": u for a, u in p.items()} for p in first],
    )


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def hf_model(folder: Path, *, chat_template: bool = True, hidden: int = 32, texts: list[str] | None = None) -> Path:
    """A small real Hugging Face model folder, as a user brings one: a ``LlamaForCausalLM`` saved
    with ``save_pretrained`` (safetensors) and a fast byte-level BPE tokenizer beside it, trained
    on ``texts`` (default: ``data_rows``), with no pad token and, by default, a ChatML chat
    template whose turns end with the ``<|im_end|>`` end token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = texts or [f"{r['q']}\n{r['a']}" for r in data_rows()]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    raw.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer)
    eos = "<|im_end|>" if chat_template else "<|endoftext|>"
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token=eos)
    if chat_template:
        tok.chat_template = CHATML
    folder.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(folder)
    import torch

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(folder: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A real `mlflow server` on 127.0.0.1 with its store in ``folder`` (one worker, no job
    runner: it starts in seconds), once it answers ``/health``; returns it and its URL."""
    port = port or free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    args = ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    args += ["--backend-store-uri", f"sqlite:///{folder / 'server.db'}"]
    args += ["--artifacts-destination", str(folder / "server-artifacts")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return proc, url
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                stop_process(proc)
                raise RuntimeError("mlflow server did not come up") from None
            time.sleep(0.5)


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spawn_cli(folder: Path, cache_dir: Path, args: list[str]) -> subprocess.Popen:
    """``allocator ARGS`` in ``folder`` as a process of its own session (Ray's helper processes
    outlive a SIGKILLed driver and must be reaped with ``reap``), its output a text pipe."""
    env = {**os.environ, "ALLOCATOR_CACHE_DIR": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "allocator", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def reap(proc: subprocess.Popen) -> None:
    """SIGKILL every process left in ``proc``'s session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
