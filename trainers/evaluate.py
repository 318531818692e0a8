"""Per-ability evaluation: exact match by greedy generation, and held-out response loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trainers.tokenizer import EOS, PAD, CharTokenizer

__all__ = ["collate", "evaluate"]


def collate(encoded: Sequence[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Right-pad (ids, loss mask) pairs; labels are -100 outside the loss mask."""
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), PAD, dtype=torch.long)
    attn = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    for i, (x, m) in enumerate(encoded):
        ids[i, : len(x)] = torch.tensor(x)
        attn[i, : len(x)] = 1
        labels[i, : len(x)] = torch.where(torch.tensor(m, dtype=torch.bool), torch.tensor(x), -100)
    return {"input_ids": ids, "attention_mask": attn, "labels": labels}


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _response_loss(model: Any, tok: CharTokenizer, examples: Sequence[Any], max_length: int, chunk: int) -> float:
    total, count = 0.0, 0
    for start in range(0, len(examples), chunk):
        enc = [tok.encode_example(e.instruction, e.response) for e in examples[start : start + chunk]]
        enc = [(ids[:max_length], m[:max_length]) for ids, m in enc]
        batch = {k: v.to(_device(model)) for k, v in collate(enc).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += nll.item()
        count += int((labels != -100).sum())
    return total / max(count, 1)


@torch.no_grad()
def _greedy(model: Any, prompts: list[list[int]], max_new_tokens: int, max_length: int) -> list[list[int]]:
    """Greedy decoding of left-padded prompts, no sampling: deterministic."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), PAD, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        attn[i, width - len(p) :] = 1
    ids, attn = ids.to(_device(model)), attn.to(_device(model))
    out: list[list[int]] = [[] for _ in prompts]
    # each row's own limit: a long prompt elsewhere in the batch must not shorten it
    limits = [max(0, min(max_new_tokens, max_length - len(p))) for p in prompts]
    done = torch.tensor([lim == 0 for lim in limits], dtype=torch.bool, device=ids.device)
    for _ in range(max(limits, default=0)):
        # positions count real tokens only, so left padding does not shift them
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, -1]
        nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        for i in range(len(prompts)):
            if not done[i]:
                out[i].append(int(nxt[i]))
        done |= nxt == EOS
        for i in range(len(prompts)):
            if len(out[i]) >= limits[i]:
                done[i] = True
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        attn = torch.cat([attn, (~done | (nxt == EOS)).long()[:, None]], dim=1)
        if bool(done.all()):
            break
    return out


def evaluate(
    model: Any,
    heldout: dict[str, Sequence[Any]],
    *,
    max_new_tokens: int,
    max_length: int,
    chunk: int = 128,
) -> dict[str, dict[str, float]]:
    """``{ability: {"exact_match": acc, "loss": mean response NLL}}`` on the held-out sets."""
    tok = CharTokenizer()
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, float]] = {}
    try:
        for ability, examples in heldout.items():
            correct = 0
            for start in range(0, len(examples), chunk):
                part = examples[start : start + chunk]
                gens = _greedy(model, [tok.encode_prompt(e.instruction) for e in part], max_new_tokens, max_length)
                correct += sum(tok.decode(g) == e.response for g, e in zip(gens, part, strict=True))
            out[ability] = {
                "exact_match": correct / max(len(examples), 1),
                "loss": _response_loss(model, tok, examples, max_length, chunk),
            }
    finally:
        model.train(was_training)
    return out
