"""The tiny base model: built from a config, pretrained briefly, cached by content hash.

No hub download anywhere: the model is a ``LlamaForCausalLM`` built from a
``LlamaConfig`` in code, pretrained on ``trainers.corpus.generic_text``, and
saved as safetensors under ``$ALLOCATOR_CACHE_DIR`` (default
``~/.cache/allocator``) in ``base-<hash>/``. The hash covers the model and
pretraining settings and ``BUILD_VERSION`` (bumped when the recipe changes), so
a run reuses a base that was built by exactly the same recipe.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from trainers.corpus import generic_documents
from trainers.tokenizer import BOS, EOS, PAD, CharTokenizer

__all__ = ["BUILD_VERSION", "BaseModel", "build_or_load_base", "cache_dir", "load_model", "make_llama_config"]

BUILD_VERSION = 1


def cache_dir() -> Path:
    env = os.environ.get("ALLOCATOR_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "allocator"


def make_llama_config(model: dict[str, Any], vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=model["hidden_size"],
        intermediate_size=model["intermediate_size"],
        num_hidden_layers=model["num_layers"],
        num_attention_heads=model["num_heads"],
        num_key_value_heads=model["num_heads"],
        max_position_embeddings=model["max_length"],
        tie_word_embeddings=True,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )


class BaseModel:
    """A built base: where it lives, its weights' bytes, and how it was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta = json.loads((path / "meta.json").read_text())

    @property
    def weights(self) -> bytes:
        return (self.path / "model.safetensors").read_bytes()


def load_model(model_cfg: dict[str, Any], weights: bytes) -> LlamaForCausalLM:
    """A fresh model from the config with the given safetensors weights."""
    tok = CharTokenizer()
    model = LlamaForCausalLM(make_llama_config(model_cfg, tok.vocab_size))
    state = load_safetensors(weights)
    # tied embeddings: the file stores embed_tokens only
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"base weights do not fit the model: missing {missing}, unexpected {unexpected}")
    return model


def _recipe(model_cfg: dict[str, Any], pretrain_cfg: dict[str, Any]) -> dict[str, Any]:
    return {"build_version": BUILD_VERSION, "model": model_cfg, "pretrain": pretrain_cfg}


def _pretrain(model_cfg: dict[str, Any], pre: dict[str, Any], threads: int, log: Any) -> LlamaForCausalLM:
    torch.manual_seed(pre["seed"])
    tok = CharTokenizer()
    model = LlamaForCausalLM(make_llama_config(model_cfg, tok.vocab_size))
    seq = model_cfg["max_length"]
    steps, bs = pre["steps"], pre["batch_size"]
    if steps == 0:
        return model
    # a contiguous stream cut into rows of `seq` tokens: no padding, every token counts
    stream: list[int] = []
    for doc in generic_documents(steps * bs * seq + seq, seed=pre["seed"], echo=pre["echo"]):
        stream += [BOS, *tok.encode(doc), EOS]
    ids = torch.tensor(stream, dtype=torch.long)
    rows = ids[: (len(ids) // seq) * seq].view(-1, seq)
    gen = torch.Generator().manual_seed(pre["seed"])
    opt = torch.optim.AdamW(model.parameters(), lr=pre["lr"], weight_decay=pre["weight_decay"])
    warmup = max(1, steps // 20)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    model.train()
    try:
        for step in range(steps):
            lr = pre["lr"] * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
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
    model_cfg: dict[str, Any], pretrain_cfg: dict[str, Any], *, threads: int | None = None, log: Any = None
) -> BaseModel:
    """Return the cached base for this recipe, building (and caching) it on first use."""
    recipe = _recipe(model_cfg, pretrain_cfg)
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    final = cache_dir() / f"base-{digest}"
    if (final / "meta.json").is_file():
        return BaseModel(final)
    if log is not None:
        log(f"building the base model (first run of this recipe; cached at {final})")
    t0 = time.perf_counter()
    model = _pretrain(model_cfg, pretrain_cfg, threads or (os.cpu_count() or 1), log)
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
    return BaseModel(final)
