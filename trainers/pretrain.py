"""The built-in base model and its tokenizer: built from a spec, pretrained, cached by content hash.

No hub download anywhere: the model is a ``LlamaForCausalLM`` built from a
``LlamaConfig`` in code (``trainers.models``), pretrained on a corpus, and saved as safetensors under
``$ALLOCATOR_CACHE_DIR`` (default ``~/.cache/allocator``) in ``base-<hash>/``.
The hash covers the model and pretraining settings, the tokenizer, the corpus
(its content hash when it is user data) and ``BUILD_VERSION`` (bumped when the
recipe changes), so a run reuses a base built by exactly the same recipe.

The corpus (``pretrain.corpus``) is ``generic`` synthetic prose
(``trainers.corpus``), or ``data``: the system and user turns of the training
pool, never its responses nor any held-out example, the way a real base has
read text like the prompts but not been taught the answers. A ``bpe``
tokenizer is trained on the same corpus (for ``data``: all turns of the
training pool) and cached as ``tokenizer-<hash>.json`` (JSON, not a pickle).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

from trainers.config import ModelSpec, PretrainRecipe
from trainers.corpus import generic_documents
from trainers.models import ModelRef, make_llama_config
from trainers.tokenizer import (
    CharTokenizer,
    HFTokenizer,
    encode_texts,
    load_tokenizer_dir,
    tokenizer_from_spec,
    train_bpe,
)

__all__ = ["BUILD_VERSION", "CachedBase", "build_or_load_base", "build_or_load_tokenizer", "cache_dir"]

BUILD_VERSION = 2
_BUILT_FROM = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length", "tokenizer", "vocab_size")


def cache_dir() -> Path:
    env = os.environ.get("ALLOCATOR_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "allocator"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def build_or_load_tokenizer(
    spec: ModelSpec, texts: Callable[[], Iterable[str]], corpus_digest: str
) -> CharTokenizer | HFTokenizer:
    """The tokenizer ``spec.tokenizer`` names; a ``bpe`` one is trained on ``texts()`` once
    and cached under the digest of its settings and its corpus."""
    if spec.name_or_path is not None:  # a pretrained model brings its own tokenizer
        from trainers.hub import is_local

        where = spec.name_or_path
        return load_tokenizer_dir(
            where,
            trust_remote_code=spec.trust_remote_code,
            revision=spec.revision,
            field="model.name_or_path",
            local=is_local(where),
        )
    kind = spec.tokenizer
    if kind == "char":
        return CharTokenizer()
    if kind != "bpe":
        return load_tokenizer_dir(kind, trust_remote_code=spec.trust_remote_code)
    digest = _digest({"build_version": BUILD_VERSION, "vocab_size": spec.vocab_size, "corpus": corpus_digest})
    path = cache_dir() / f"tokenizer-{digest}.json"
    if path.is_file():
        return tokenizer_from_spec(json.loads(path.read_text()))
    tok = train_bpe(texts(), spec.vocab_size, name=f"bpe-{digest}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(tok.spec()))
    tmp.replace(path)  # atomic: a reader never sees half a tokenizer
    return tok


class CachedBase:
    """A built base in the cache: where it lives, its weights' bytes, and how it was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta = json.loads((path / "meta.json").read_text())

    @property
    def weights(self) -> bytes:
        return (self.path / "model.safetensors").read_bytes()

    def ref(self, spec: ModelSpec) -> ModelRef:
        """The reference a trainer call takes."""
        return ModelRef(spec, self.weights)


def _recipe(spec: ModelSpec, pre: PretrainRecipe, tok: Any, corpus_digest: str) -> dict[str, Any]:
    # the trust flag, truncation and the fields of a pretrained model (or its run's dtype and
    # attention kernel: pretraining is float32) change nothing in the built weights; the
    # tokenizer is identified by content
    model = {k: v for k, v in spec.to_dict().items() if k in _BUILT_FROM}
    tok_spec = {k: v for k, v in tok.spec().items() if k != "stop_ids"}
    tok_id = "char" if tok_spec["kind"] == "char" else _digest(tok_spec)
    return {
        "build_version": BUILD_VERSION,
        "model": model,
        "pretrain": pre.to_dict(),
        "tokenizer": tok_id,
        "corpus": corpus_digest,
    }


def _stream(tok: Any, docs: Sequence[str], n_tokens: int, seed: int) -> list[int]:
    """``<bos> doc <eos>`` of every document in order, then more passes in seeded orders
    until there are ``n_tokens``."""
    encoded = encode_texts(tok, docs)
    if not any(encoded):
        raise ValueError("the pretraining corpus is empty")
    head = [] if getattr(tok, "bos_id", None) is None else [tok.bos_id]
    rng = random.Random(seed)
    stream: list[int] = []
    for e in encoded:
        stream += [*head, *e, tok.eos_id]
    while len(stream) < n_tokens:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for i in order:
            stream += [*head, *encoded[i], tok.eos_id]
            if len(stream) >= n_tokens:
                break
    return stream


def _pretrain(
    spec: ModelSpec, pre: PretrainRecipe, tok: Any, docs: Sequence[str] | None, threads: int, log: Any
) -> LlamaForCausalLM:
    torch.manual_seed(pre.seed)
    model = LlamaForCausalLM(make_llama_config(spec, tok))
    seq = spec.max_length
    steps, bs = pre.steps, pre.batch_size
    if steps == 0:
        return model
    # a contiguous stream cut into rows of `seq` tokens: no padding, every token counts
    need = steps * bs * seq + seq
    if docs is None:  # generic prose: about one token a character for `char`, fewer for `bpe`
        docs = generic_documents(need, seed=pre.seed, echo=pre.echo)
    ids = torch.tensor(_stream(tok, docs, need, pre.seed), dtype=torch.long)
    rows = ids[: (len(ids) // seq) * seq].view(-1, seq)
    gen = torch.Generator().manual_seed(pre.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=pre.lr, weight_decay=pre.weight_decay)
    warmup = max(1, steps // 20)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    model.train()
    try:
        for step in range(steps):
            lr = pre.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            for g in opt.param_groups:
                g["lr"] = lr
            batch = rows[torch.randint(len(rows), (bs,), generator=gen)]
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if log is not None and ((step + 1) % max(1, steps // 5) == 0 or step + 1 == steps):
                log(f"  pretrain step {step + 1}/{steps}  loss {loss.item():.3f}")
    finally:
        torch.set_num_threads(prev_threads)
    model.eval()
    return model


def build_or_load_base(
    spec: ModelSpec,
    pretrain: PretrainRecipe,
    *,
    tok: Any,
    docs: Callable[[], Sequence[str]] | None = None,
    corpus_digest: str = "generic",
    threads: int | None = None,
    log: Any = None,
) -> CachedBase:
    """Return the cached base for this recipe, building (and caching) it on first use.

    ``docs`` gives the pretraining documents (``None``: generic prose) and
    ``corpus_digest`` identifies them in the cache key."""
    recipe = _recipe(spec, pretrain, tok, corpus_digest)
    digest = _digest(recipe)
    final = cache_dir() / f"base-{digest}"
    if (final / "meta.json").is_file():
        return CachedBase(final)
    if log is not None:
        log(f"building the base model (first run of this recipe; cached at {final})")
    t0 = time.perf_counter()
    model = _pretrain(spec, pretrain, tok, docs() if docs else None, threads or (os.cpu_count() or 1), log)
    final.parent.mkdir(parents=True, exist_ok=True)
    # build in a temporary folder, then rename: a crash never leaves half a base behind
    tmp = Path(tempfile.mkdtemp(prefix=f".base-{digest}-", dir=final.parent))
    try:
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        save_file(state, str(tmp / "model.safetensors"))
        meta = {
            **recipe,
            "digest": digest,
            "params": sum(p.numel() for p in model.parameters()),
            "build_seconds": round(time.perf_counter() - t0, 1),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            tmp.rename(final)
        except OSError:  # another process finished the same build first
            if not (final / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return CachedBase(final)
