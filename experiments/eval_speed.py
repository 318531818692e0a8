"""Evaluation time before and after batched ``generate`` with a KV cache (issue 14).

Before: ``trainers.evaluation.greedy_uncached``, the hand-written loop that runs the whole
sequence through the model for every new token (quadratic in the answer's length). After:
``trainers.evaluation.greedy``, ``model.generate`` with a KV cache. Both decode the same
left-padded prompts in chunks of 64, as ``evaluate`` does, and must give the same tokens
(checked here on every prompt). Two models:

- ``builtin``: the embedded default's base (0.34M parameters) on the built-in suite's held-out
  prompts (7 abilities x 48, answers of at most 12 tokens): what every default trial evaluates;
- ``larger``: a 2-layer, 256-wide Llama (random weights) on 64 prompts of ~100 tokens, 64 new
  tokens each: the regime of a real model's longer answers.

    .venv/bin/python experiments/eval_speed.py            # prints a table, writes JSON to stdout's last line

Times are the best of 3 repetitions on one torch thread (a trial's setting), in seconds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.evaluation import greedy, greedy_uncached


def _best(fn, reps: int = 3) -> tuple[float, list]:
    best, out = float("inf"), []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _decode_all(decode, model, prompts, max_new, max_length, pad, stops):
    out = []
    for start in range(0, len(prompts), 64):
        out += decode(model, prompts[start : start + 64], max_new, max_length, pad, stops)
    return out


def _compare(name, model, prompts, max_new, max_length, pad, stops) -> dict:
    model.eval()
    args = (model, prompts, max_new, max_length, pad, stops)
    t_old, old = _best(lambda: _decode_all(greedy_uncached, *args))
    t_new, new = _best(lambda: _decode_all(greedy, *args))
    row = {
        "model": name,
        "prompts": len(prompts),
        "max_new_tokens": max_new,
        "tokens_generated": sum(len(g) for g in new),
        "uncached_s": round(t_old, 3),
        "generate_s": round(t_new, 3),
        "speedup": round(t_old / t_new, 2),
        "identical": old == new,
    }
    print(
        f"{name:8s} {row['prompts']:4d} prompts  {row['tokens_generated']:5d} tokens  uncached {t_old:7.3f}s  "
        f"generate {t_new:7.3f}s  x{row['speedup']:.2f}  identical={row['identical']}",
        flush=True,
    )
    return row


def builtin() -> dict:
    from allocator.config import OptimizeConfig
    from allocator.data.pools import prepare_pools
    from trainers.pretrain import build_or_load_base

    cfg = OptimizeConfig()
    pools, tok, _ = prepare_pools(cfg)
    model = build_or_load_base(cfg.model.spec(), cfg.pretrain.recipe(), tok=tok).ref(cfg.model.spec()).load(tok)
    prompts = [it.ids[: it.prompt] for items in pools.heldout.values() for it in items]
    return _compare("builtin", model, prompts, cfg.proxy.max_new_tokens, 64, tok.pad_id, tok.stop_ids())


def larger() -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=2048,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(4, 2048, (int(torch.randint(80, 120, (1,), generator=gen)),), generator=gen).tolist()
               for _ in range(64)]  # fmt: skip
    # no stop token is ever produced on purpose (id 3 is not in the prompts' range): every row runs 64 tokens
    return _compare("larger", model, prompts, 64, 512, 0, {3})


if __name__ == "__main__":
    torch.set_num_threads(1)
    rows = [builtin(), larger()]
    print(json.dumps(rows))
