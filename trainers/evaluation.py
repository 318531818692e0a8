"""Per-ability evaluation: held-out response loss, and exact match by greedy generation.

Held-out examples arrive tokenized (``HeldoutItem``), truncated by the same rule
as training. Every ability gets its mean response loss (nats per loss token);
abilities scored by exact match also generate greedily from the context before
their last assistant turn, up to ``max_new`` tokens, and count a hit when the
generation stopped (an end token) and its text equals the reference (both
stripped of surrounding whitespace).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["HeldoutItem", "collate", "evaluate", "greedy"]


@dataclass(frozen=True)
class HeldoutItem:
    ids: list[int]  # the whole example, truncated like training
    mask: list[int]  # loss mask
    prompt: int  # ids[:prompt] is the context before the last assistant turn
    reference: str  # the last assistant turn's text


def collate(encoded: Sequence[tuple[list[int], list[int]]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad (ids, loss mask) pairs; labels are -100 outside the loss mask."""
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
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
def _response_loss(model: Any, items: Sequence[HeldoutItem], pad_id: int, chunk: int) -> float:
    total, count = 0.0, 0
    for start in range(0, len(items), chunk):
        enc = [(it.ids, it.mask) for it in items[start : start + chunk]]
        batch = {k: v.to(_device(model)) for k, v in collate(enc, pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += nll.item()
        count += int((labels != -100).sum())
    return total / max(count, 1)


@torch.no_grad()
def greedy(
    model: Any, prompts: list[list[int]], max_new_tokens: int, max_length: int, pad_id: int, stops: set[int]
) -> list[list[int]]:
    """Greedy decoding of left-padded prompts, no sampling: deterministic. A row's output
    ends with its stop token when it produced one."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        attn[i, width - len(p) :] = 1
    ids, attn = ids.to(_device(model)), attn.to(_device(model))
    out: list[list[int]] = [[] for _ in prompts]
    # each row's own limit: a long prompt elsewhere in the batch must not shorten it
    limits = [max(0, min(max_new_tokens, max_length - len(p))) for p in prompts]
    done = [lim == 0 for lim in limits]
    for _ in range(max(limits, default=0)):
        # positions count real tokens only, so left padding does not shift them
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        nxt = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, -1].argmax(-1).tolist()
        keep = []
        for i, t in enumerate(nxt):
            if done[i]:
                nxt[i] = pad_id
                keep.append(0)
                continue
            out[i].append(t)
            keep.append(1)
            if t in stops or len(out[i]) >= limits[i]:
                done[i] = True
        ids = torch.cat([ids, torch.tensor(nxt, device=ids.device)[:, None]], dim=1)
        attn = torch.cat([attn, torch.tensor(keep, device=ids.device)[:, None]], dim=1)
        if all(done):
            break
    return out


def evaluate(
    model: Any,
    tok: Any,
    heldout: Mapping[str, Sequence[HeldoutItem]],
    *,
    metrics: Mapping[str, str],
    max_new: Mapping[str, int],
    max_length: int,
    chunk: int = 64,
) -> dict[str, dict[str, float]]:
    """``{ability: {"loss": ..., "exact_match": ...}}``; exact match only where ``metrics`` asks."""
    was_training = model.training
    model.eval()
    stops = tok.stop_ids()
    out: dict[str, dict[str, float]] = {}
    try:
        for ability, items in heldout.items():
            out[ability] = {"loss": _response_loss(model, items, tok.pad_id, chunk)}
            if metrics[ability] != "exact_match":
                continue
            correct = 0
            for start in range(0, len(items), chunk):
                part = items[start : start + chunk]
                gens = greedy(
                    model, [it.ids[: it.prompt] for it in part], max_new[ability], max_length, tok.pad_id, stops
                )
                for g, it in zip(gens, part, strict=True):
                    stopped = bool(g) and g[-1] in stops
                    correct += stopped and tok.decode(g).strip() == it.reference.strip()
            out[ability]["exact_match"] = correct / max(len(items), 1)
    finally:
        model.train(was_training)
    return out
