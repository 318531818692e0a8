"""How fast ``trainers`` runs proxy fine-tunes on one GPU: a self-contained benchmark for the device machine.

From the repository root (torch, transformers, peft, accelerate; bitsandbytes for qlora, which is
skipped with the reason recorded when it does not import)::

    python experiments/gpu_check.py            # the H200 run, about 3 minutes; results under $OUT
    python experiments/gpu_check.py --tiny     # a CPU-sized dry run of every code path

It imports ``trainers`` only (nothing of ``allocator`` or ``ray_cluster``), writes one JSON object
per result to ``$OUT/results.jsonl`` (``./gpu_check_out`` when OUT is unset), flushed at once so a
killed run keeps what it measured, and prints one line per result. Every phase has a deadline in
a whole-run budget: one that no longer fits is recorded as skipped, a proxy run past its own is cut.

0. ``env``: versions, GPU, bf16, bitsandbytes; ``matmul_tflops``: the measured dense bf16 8192^3
   matrix-product rate (float32 on a CPU), the practical ceiling.
1. ``build``: a random Llama model folder (save_pretrained, safetensors), a byte-level BPE tokenizer
   (ChatML template, eos <|im_end|>) trained here; ``params`` counts every weight.
2. ``data``: synthetic abilities (copy, reverse, add, sort) after a ~100-150 token passage,
   tokenized and truncated as the proxy expects; example and prompt lengths in tokens.
3. ``proxy_<kind>`` (lora, qlora, full): ``trainers.proxy.run_proxy``, one evaluation at the end.
   ``tokens_per_s``: real (not padding) tokens per second of training steps; ``pad_fraction``: the
   padding share of the right-padded batches; ``peak_gpu_memory_mb``: the run's peak allocation
   (``peak_reserved_mb``: the caching allocator's); ``load_s``, ``train_s``, ``eval_s``: loading,
   training, the final evaluation; ``mfu_measured``, ``mfu_datasheet``: 6 * N * tokens_per_s over
   the measured rate and over the H200's 989 TFLOP/s dense bf16, N = ``params_matmul`` (every
   weight but the input embedding, a lookup). 6N is the usual forward+backward estimate; LoRA and
   QLoRA propagate through the frozen base but compute no weight gradients for it, so their true
   work is nearer 4N (MFU x 2/3); attention scores and padding are not counted.
4. ``multi``: 4 LoRA proxies as 4 processes on the GPU at once (sizes ``resources.gpus_per_trial:
   0.25``), started behind a barrier: each one's tokens/s and peak memory, ``device_used_mb`` (the
   card's use by all of them, contexts and caches included), ``aggregate_tokens_per_s`` (all their
   tokens over the window any of them trained in) against the single-process LoRA rate.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, NamedTuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # trainers/ is imported from the checkout, not an installed copy
# transformers' per-load progress bars would bury the result lines (workers inherit it)
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

DATASHEET_BF16 = 989e12  # H200 SXM dense bf16, FLOP/s
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ABILITIES = ("copy", "reverse", "add", "sort")
SIZES: dict[bool, dict[str, Any]] = {
    False: dict(hidden=1024, layers=12, heads=16, inter=2816, vocab=16384, words=8000, passage=(60, 110),
                max_length=256, train=600, heldout=32, batch=32, steps=250, max_new=24, workers=4, worker_steps=100,
                budget=210.0, boxes={"lora": 45, "qlora": 45, "full": 45, "multi": 70}, min_box=(20, 40),
                eval_reserve=8.0, matmul=8192, matmul_s=3.0, threads=4),
    True: dict(hidden=64, layers=2, heads=4, inter=128, vocab=1024, words=300, passage=(8, 20),
               max_length=96, train=20, heldout=4, batch=8, steps=20, max_new=8, workers=2, worker_steps=8,
               budget=110.0, boxes={"lora": 20, "qlora": 20, "full": 20, "multi": 45}, min_box=(8, 20),
               eval_reserve=5.0, matmul=512, matmul_s=0.5, threads=1),
}  # fmt: skip


class Turn(NamedTuple):
    role: str
    content: str


class Cut(Exception):
    """Raised inside run_proxy's loop when a run passes its deadline (run_proxy has no stop hook)."""


def rounded(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return [rounded(v) for v in x] if isinstance(x, list | tuple) else round(x, 4) if isinstance(x, float) else x


class Log:
    """results.jsonl, one flushed line per result, and one printed line."""

    def __init__(self, path: Path) -> None:
        self.t0, self.f = time.time(), path.open("w")
        self.errors, self.skipped = [], []  # phase names

    def __call__(self, phase: str, line: str, status: str = "ok", **fields: Any) -> None:
        rec = {"phase": phase, "status": status, "t": round(time.time() - self.t0, 1), **rounded(fields)}
        self.f.write(json.dumps(rec, default=str) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())  # a run killed by the device's time limit keeps every line so far
        (self.errors if status == "error" else self.skipped if status == "skipped" else []).append(phase)
        print(f"[{rec['t']:6.1f}s] {phase} {status}: {line}", flush=True)


class Guard:
    """Stands in for trainers.proxy.collate during a run: counts steps and tokens, holds a
    worker at a start barrier (so that concurrent workers train over the same window), and
    raises Cut at the deadline, before the next step's batch."""

    def __init__(self, collate: Any, deadline: float, barrier: tuple[Path, int, int] | None) -> None:
        self.collate, self.deadline, self.barrier = collate, deadline, barrier
        self.first = self.start = self.cut_at = 0.0
        self.steps = self.real = self.padded = 0

    def __call__(self, encoded: Any, pad_id: int = 0) -> dict[str, torch.Tensor]:
        now = time.time()
        if not self.first:
            self.first = now
            if self.barrier is not None:
                folder, index, count = self.barrier
                (folder / f"ready{index}").touch()
                # at most 30 s: a peer that crashed before training must not hold the others forever
                while len(list(folder.glob("ready*"))) < count and time.time() < min(self.deadline, now + 30):
                    time.sleep(0.05)
            self.start = time.time()
        elif now > self.deadline:
            self.cut_at = now
            raise Cut
        batch = self.collate(encoded, pad_id)
        self.steps += 1
        self.real += int(batch["attention_mask"].sum())
        self.padded += batch["attention_mask"].numel()
        return batch


def fmt(x: float | None, unit: str = "", scale: float = 1.0, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x / scale:.{digits}f}{unit}"


def measure_matmul(n: int, seconds: float, device: torch.device) -> float:
    """FLOP/s of back-to-back n x n x n products (bf16 on a GPU, float32 on a CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    c = torch.empty_like(a)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):  # cuBLAS handle, kernel choice and clocks settle first
        torch.mm(a, b, out=c)
    sync()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            torch.mm(a, b, out=c)
        sync()
        count += 20
    return 2 * n**3 * count / (time.perf_counter() - t0)


def phase_env(log: Log, sz: dict[str, Any], device: torch.device) -> tuple[float, str | None]:
    import peft
    import transformers

    try:
        import bitsandbytes

        bnb, bnb_problem = bitsandbytes.__version__, None
    except Exception as e:  # a native library's import failure is not one exception type
        bnb, bnb_problem = None, f"bitsandbytes does not import: {(str(e).strip() or repr(e)).splitlines()[0]}"
    cuda = device.type == "cuda"
    rate = measure_matmul(sz["matmul"], sz["matmul_s"], device)
    gpu = torch.cuda.get_device_name(0) if cuda else None
    log("env", f"{gpu or 'CPU'}, torch {torch.__version__}, matmul {rate / 1e12:.3g} TFLOP/s, bitsandbytes {bnb}",
        torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__, bitsandbytes=bnb,
        bitsandbytes_problem=bnb_problem, gpu=gpu, bf16=cuda and torch.cuda.is_bf16_supported(), cpus=os.cpu_count(),
        gpu_memory_mb=torch.cuda.get_device_properties(0).total_memory / 2**20 if cuda else None,
        matmul_tflops=rate / 1e12, matmul_shape=f"{sz['matmul']}^3 {'bf16' if cuda else 'float32'}")  # fmt: skip
    return rate, bnb_problem


def make_example(ability: str, rng: random.Random, words: list[str], sz: dict[str, Any]) -> tuple[list[Turn], str]:
    """One (user, assistant) conversation: a passage of pseudo-words (a realistic prompt
    length), then a task on it."""
    passage = [rng.choice(words) for _ in range(rng.randint(*sz["passage"]))]
    if ability == "copy":
        q, a = "Copy the last four words of the passage.", " ".join(passage[-4:])
    elif ability == "reverse":
        q, a = "Write the first four words of the passage in reverse order.", " ".join(passage[3::-1])
    elif ability == "add":
        x, y = rng.randint(100, 99999), rng.randint(100, 99999)
        q, a = f"Ignore the passage and add {x} and {y}.", str(x + y)
    else:
        w = max(rng.sample(words, 3), key=len)
        q, a = f"Sort the letters of {w} alphabetically.", "".join(sorted(w))
    return [Turn("user", f"Passage: {' '.join(passage)}\n{q}"), Turn("assistant", a)], a


def phase_build(log: Log, sz: dict[str, Any], device: torch.device, tmp: Path) -> tuple[Path, dict[str, Any], int]:
    """The model folder, the raw conversations (the BPE is trained on them), the matmul parameters."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    t0 = time.time()
    rng = random.Random(0)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(sz["words"])})
    splits = ("train", "heldout")
    convs = {s: {a: [make_example(a, rng, words, sz) for _ in range(sz[s])] for a in ABILITIES} for s in splits}
    texts = [t.content for split in convs.values() for items in split.values() for turns, _ in items for t in turns]
    raw = Tokenizer(models.BPE())  # as tests/helpers.py hf_model: byte-level, digits one by one
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    raw.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    raw.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=sz["vocab"], special_tokens=specials,
                                                        initial_alphabet=alphabet, show_progress=False))  # fmt: skip
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|im_end|>")
    tok.chat_template = CHATML
    folder = tmp / "model"
    tok.save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=math.ceil(len(tok) / 128) * 128,  # padded as real checkpoints are, for the matmul shapes
        hidden_size=sz["hidden"], intermediate_size=sz["inter"], num_hidden_layers=sz["layers"],
        num_attention_heads=sz["heads"], num_key_value_heads=sz["heads"], max_position_embeddings=sz["max_length"],
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU: seconds faster than on the CPU
        model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    matmul = params - model.get_input_embeddings().weight.numel()
    model.to(torch.bfloat16 if device.type == "cuda" else torch.float32).save_pretrained(folder)
    del model
    mb = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    shape = {k: sz[k] for k in ("hidden", "layers", "heads", "inter")} | {"vocab": config.vocab_size}
    log("build", f"{params / 1e6:.1f}M params, vocab {len(tok)} (model {config.vocab_size}), {time.time() - t0:.1f} s",
        params=params, params_matmul=matmul, tokenizer_vocab=len(tok), shape=shape, folder_mb=mb,
        seconds=time.time() - t0)  # fmt: skip
    return folder, convs, matmul


def phase_data(log: Log, sz: dict[str, Any], folder: Path, convs: dict[str, Any], path: Path) -> None:
    """Tokenize with the folder's tokenizer through trainers; written to ``path`` for the workers too."""
    from trainers.tokenizer import load_tokenizer_dir, prompt_length, truncate

    t0 = time.time()
    tok = load_tokenizer_dir(str(folder))
    data: dict[str, dict[str, list[Any]]] = {"train": {}, "heldout": {}}
    dropped, lengths, prompts = 0, [], []
    for split, per in convs.items():
        for ability, items in per.items():
            data[split][ability] = []
            for turns, ref in items:
                cut = truncate(*tok.encode_turns(turns), sz["max_length"])
                if cut is None:  # no loss token left: never trained on silently
                    dropped += 1
                    continue
                ids, mask = cut
                lengths.append(len(ids))
                prompts.append(prompt_length(mask))
                data[split][ability].append([ids, mask] if split == "train" else [ids, mask, prompts[-1], ref])
    path.write_text(json.dumps(data))
    n = sum(len(v) for v in data["train"].values())
    mean, prompt = sum(lengths) / len(lengths), sum(prompts) / len(prompts)
    log("data", f"{n} train examples, mean {mean:.0f} tokens (prompt {prompt:.0f}), {time.time() - t0:.1f} s",
        train_examples=n, heldout_examples=sum(len(v) for v in data["heldout"].values()), dropped=dropped,
        mean_tokens=mean, max_tokens=max(lengths), mean_prompt_tokens=prompt, seconds=time.time() - t0)  # fmt: skip


def run_kind(kind: str, job: dict[str, Any], sz: dict[str, Any], steps: int, deadline: float) -> dict[str, Any]:
    """One run_proxy, timed: its measurements as a plain dict (also what a worker hands back)."""
    import trainers.proxy as proxy
    from trainers import HeldoutItem, ModelRef, ModelSpec, ProxyRecipe
    from trainers.tokenizer import load_tokenizer_dir

    cuda = torch.cuda.is_available()
    data = json.loads(Path(job["data"]).read_text())
    train = {a: [tuple(r) for r in rows] for a, rows in data["train"].items()}
    heldout = {a: [HeldoutItem(*r) for r in rows] for a, rows in data["heldout"].items()}
    n = sum(len(v) for v in train.values())
    # epochs so that ceil(n * epochs / batch) == steps, float error aside
    recipe = ProxyRecipe(kind=kind, epochs=(steps - 0.5) * sz["batch"] / n, batch_size=sz["batch"],
                         lr=1e-4 if kind == "full" else 1e-3, reports=1, max_new_tokens=sz["max_new"],
                         threads=sz["threads"])  # fmt: skip
    spec = ModelSpec(name_or_path=job["folder"], max_length=sz["max_length"], dtype="bfloat16" if cuda else "auto")
    barrier = (Path(job["barrier"]), job["index"], job["count"]) if job.get("barrier") else None
    guard = Guard(proxy.collate, deadline, barrier)
    seen: dict[str, Any] = {}
    t0 = time.time()
    proxy.collate = guard  # a module global looked up per step: the only way into run_proxy's loop
    try:
        result = proxy.run_proxy(
            model=ModelRef(spec), tokenizer=load_tokenizer_dir(job["folder"]).spec(), train=train, heldout=heldout,
            metrics=dict.fromkeys(train, "exact_match"), max_new=dict.fromkeys(train, sz["max_new"]),
            mixture={a: len(v) for a, v in train.items()}, recipe=recipe, seed=0,
            report=lambda step, scores, perf: seen.update(perf=perf, scores=scores, at=time.time()))  # fmt: skip
        train_s = result.train_seconds - (guard.start - guard.first)  # the barrier wait sat in the first step
        loss = sum(s["loss"] for s in seen["scores"].values()) / len(seen["scores"])
        eval_s = seen["at"] - guard.first - result.train_seconds
        out: dict[str, Any] = dict(steps=result.steps, tokens=result.tokens, train_s=train_s, cut=False, eval_s=eval_s)
        out |= dict(proxy_tokens_per_s=seen["perf"]["tokens_per_s"], eval_loss=loss)
        peak = seen["perf"].get("peak_gpu_memory_mb")
    except Cut:  # every step collated so far had finished (synchronized) by then; the evaluation is skipped
        out = dict(steps=guard.steps, tokens=guard.real, train_s=guard.cut_at - guard.start, cut=True, eval_s=None)
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None  # run_proxy reset it after loading
    finally:
        proxy.collate = guard.collate
    out |= dict(tokens_per_s=out["tokens"] / out["train_s"], steps_planned=steps, load_s=guard.first - t0,
                barrier_wait_s=guard.start - guard.first, train_window=[guard.start, guard.start + out["train_s"]],
                wall_s=time.time() - t0, pad_fraction=1 - guard.real / max(guard.padded, 1), peak_gpu_memory_mb=peak,
                peak_reserved_mb=torch.cuda.max_memory_reserved() / 2**20 if cuda else None)  # fmt: skip
    return out


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the next run's (and the workers') memory starts from nothing held here


def phase_proxy(log: Log, kind: str, sz: dict[str, Any], job: dict[str, Any], box: float, rate: float) -> float:
    """One kind in this process; its tokens/s."""
    r = run_kind(kind, job, sz, sz["steps"], time.time() + box - sz["eval_reserve"])
    free_memory()
    flops = 6 * job["params_matmul"] * r["tokens_per_s"]
    sheet = flops / DATASHEET_BF16 if torch.cuda.is_available() else None
    note = "6*N*tokens_per_s, N = params_matmul; LoRA/QLoRA do nearer 4N (no frozen weight gradients)"
    log(f"proxy_{kind}", f"{r['steps']}/{r['steps_planned']} steps, {fmt(r['tokens_per_s'], 'k tok/s', 1e3)}, "
        f"MFU {flops / rate:.1%} of measured ({fmt(sheet and sheet * 100, '%')} of datasheet), peak "
        f"{fmt(r['peak_gpu_memory_mb'], ' GB', 1024, 2)}, load {r['load_s']:.1f} s, train {r['train_s']:.1f} s, "
        f"eval {fmt(r['eval_s'], ' s')}", "cut" if r["cut"] else "ok",
        kind=kind, **r, mfu_measured=flops / rate, mfu_datasheet=sheet, mfu_note=note, box_s=box)  # fmt: skip
    return r["tokens_per_s"]


def card_used() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free


def phase_multi(log: Log, sz: dict[str, Any], job: dict[str, Any], box: float, tmp: Path, single: Any) -> None:
    """sz['workers'] LoRA proxies as separate processes on one device, started together."""
    cuda, count, end = torch.cuda.is_available(), sz["workers"], time.time() + box
    (tmp / "barrier").mkdir()
    used0 = used_peak = card_used() if cuda else 0
    procs = []
    for i in range(count):
        w = job | dict(barrier=str(tmp / "barrier"), index=i, count=count, deadline=end - sz["eval_reserve"],
                       result=str(tmp / f"worker{i}.json"), tiny=sz is SIZES[True])  # fmt: skip
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "lora", "--job", json.dumps(w)]
        logf, env = (tmp / f"worker{i}.log").open("w"), os.environ | {"PYTHONUNBUFFERED": "1"}
        procs.append(subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env))
    while any(p.poll() is None for p in procs) and time.time() < end + 5:
        if cuda:  # the card as a whole: every worker's context, allocator cache and tensors
            used_peak = max(used_peak, card_used())
        time.sleep(0.25)
    killed = [i for i, p in enumerate(procs) if p.poll() is None]
    for i in killed:  # stragglers past the box: only the processes started here, by their handle
        procs[i].kill()
        procs[i].wait()
    rows = []
    for i, p in enumerate(procs):
        if not (tmp / f"worker{i}.json").exists():
            tail = (tmp / f"worker{i}.log").read_text()[-1500:]
            why = "killed past the box" if i in killed else f"rc {p.returncode}"
            log(f"multi_worker{i}", f"no result ({why})", "error", worker=i, rc=p.returncode, log=tail)
            continue
        w = json.loads((tmp / f"worker{i}.json").read_text())
        rows.append(w)
        log(f"multi_worker{i}", f"{w['steps']}/{w['steps_planned']} steps, {fmt(w['tokens_per_s'], 'k tok/s', 1e3)}, "
            f"peak {fmt(w['peak_gpu_memory_mb'], ' GB', 1024, 2)}, load {w['load_s']:.1f} s, waited "
            f"{w['barrier_wait_s']:.1f} s", "cut" if w["cut"] else "ok", worker=i, **w)  # fmt: skip
    if not rows:
        log("multi", "no worker finished", "error", killed=killed)
        return
    start, stop = min(w["train_window"][0] for w in rows), max(w["train_window"][1] for w in rows)
    common = min(w["train_window"][1] for w in rows) - max(w["train_window"][0] for w in rows)
    agg = sum(w["tokens"] for w in rows) / (stop - start)  # all tokens over the window any of them trained in
    summed = sum(w["tokens_per_s"] for w in rows)
    used = (used_peak - used0) / 2**20 if cuda else None
    log("multi", f"{len(rows)}/{count} workers, aggregate {fmt(agg, 'k tok/s', 1e3)} (sum {fmt(summed, 'k', 1e3)})"
        f" vs single {fmt(single, 'k', 1e3)}: x{fmt(single and agg / single, '', 1, 2)}; card used "
        f"{fmt(used, ' GB', 1024, 2)}",
        workers=count, finished=len(rows), killed=killed, aggregate_tokens_per_s=agg, summed_tokens_per_s=summed,
        single_tokens_per_s=single, speedup_vs_single=agg / single if single else None, box_s=box,
        overlap_fraction=max(common, 0) / (stop - start), device_used_mb=used,
        max_worker_peak_mb=max(w["peak_gpu_memory_mb"] or 0 for w in rows) if cuda else None)  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="a CPU-sized dry run of every code path")
    p.add_argument("--worker", choices=["lora"], help=argparse.SUPPRESS)  # one process of phase 4
    p.add_argument("--job", help=argparse.SUPPRESS)  # the worker's folder, data, barrier, deadline (JSON)
    args = p.parse_args()
    if args.worker:
        job = json.loads(args.job)
        r = run_kind(args.worker, job, SIZES[job["tiny"]], SIZES[job["tiny"]]["worker_steps"], job["deadline"])
        Path(job["result"]).write_text(json.dumps(r))
        return 0

    sz = SIZES[args.tiny]
    out = Path(os.environ.get("OUT") or "gpu_check_out")
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "results.jsonl")
    deadline = log.t0 + sz["budget"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))  # not under $OUT: only 8 small files come back from there
    try:
        rate, bnb_problem = phase_env(log, sz, device)
        folder, convs, n = phase_build(log, sz, device, tmp)
        job = {"folder": str(folder), "data": str(tmp / "data.json"), "params_matmul": n}
        phase_data(log, sz, folder, convs, tmp / "data.json")
        # the qlora phase on a CPU only in --tiny (trainers runs it there through bitsandbytes' CPU path)
        why_not = bnb_problem or (None if device.type == "cuda" or args.tiny else "no CUDA device")
        if why_not:
            log("proxy_qlora", why_not, "skipped", kind="qlora", reason=why_not)
        plan = [k for k in ("lora", "qlora", "full", "multi") if k != "qlora" or not why_not]
        single = None
        for i, k in enumerate(plan):
            later = sum(sz["min_box"][x == "multi"] for x in plan[i + 1 :])  # what the phases after it need
            box = min(sz["boxes"][k], deadline - time.time() - later)
            name = "multi" if k == "multi" else f"proxy_{k}"
            if box < sz["min_box"][k == "multi"]:
                log(name, f"out of time ({box:.0f} s left for it)", "skipped", kind=k, reason="budget")
                continue
            try:
                if k == "multi":
                    phase_multi(log, sz, job, box, tmp, single)
                else:
                    tps = phase_proxy(log, k, sz, job, box, rate)
                    single = tps if k == "lora" else single
            except Exception as e:  # one phase's failure is a result; the others still run
                free_memory()
                log(name, f"{type(e).__name__}: {e}", "error", kind=k, traceback=traceback.format_exc()[-2000:])
    except Exception as e:
        log("run", f"{type(e).__name__}: {e}", "error", traceback=traceback.format_exc()[-2000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.time() - log.t0
    line = f"{seconds:.0f} s; errors {log.errors or 'none'}; skipped {log.skipped or 'none'}"
    log("summary", line, errors=log.errors, skipped=log.skipped, seconds=seconds, out=str(out.resolve()))
    return 1 if log.errors else 0


if __name__ == "__main__":
    sys.exit(main())
