"""Per-ability evaluation: held-out response loss, exact match by greedy generation, and
multiple-choice accuracy by likelihood ranking; per example as well as per ability.

Held-out examples arrive tokenized (``HeldoutItem``), truncated by the same rule as
training. Every ability gets its mean response loss (nats per loss token, over all its
examples' loss tokens). The ability's metric adds one score:

- ``exact_match``: greedy generation (``model.generate`` with a KV cache, batched, left
  padded) from the context before the last assistant turn, up to ``max_new`` tokens; a hit
  when the generation stopped (a stop token of the tokenizer) and its text equals the
  reference (both stripped of surrounding whitespace);
- ``choice``: the candidate answers of the example (``HeldoutItem.choices``, each a whole
  example with that candidate as the last assistant turn) ranked by their mean token
  log-likelihood over the loss tokens, as training would score them; a hit when the
  reference ranks first.

``evaluate_examples`` returns the per-example results (each example's loss, and whether it
was right), so that later work can put error bars on the scores; ``evaluate`` the
per-ability means the search reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["AbilityEval", "HeldoutItem", "collate", "evaluate", "evaluate_examples", "greedy", "greedy_uncached"]


@dataclass(frozen=True)
class HeldoutItem:
    ids: list[int]  # the whole example, truncated like training
    mask: list[int]  # loss mask
    prompt: int  # ids[:prompt] is the context before the last assistant turn
    reference: str  # the last assistant turn's text
    # metric "choice": each candidate as a whole example (ids, loss mask), and which one is the reference
    choices: tuple[tuple[list[int], list[int]], ...] = ()
    answer: int = -1


@dataclass(frozen=True)
class AbilityEval:
    """One ability's held-out results, per example."""

    losses: list[float]  # each example's mean loss per loss token
    tokens: list[int]  # each example's loss tokens
    correct: list[bool] | None  # exact match or choice, per example; None for a loss-only ability
    metric: str
    total: float  # the summed loss of every loss token (summed per batch, as before per-example results)

    def scores(self) -> dict[str, float]:
        """``{"loss": mean per token, metric: accuracy}`` (no second key for a loss metric)."""
        out = {"loss": self.total / max(sum(self.tokens), 1)}
        if self.correct is not None:
            out[self.metric] = sum(self.correct) / max(len(self.correct), 1)
        return out


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


# logits held at once in a loss batch (elements): a 150k vocabulary makes full-width batches of
# 64 long rows tens of GB; the built-in model's small vocabulary keeps whole chunks
_LOGITS_BUDGET = 2**27


def _batches(model: Any, encoded: Sequence[tuple[list[int], list[int]]], chunk: int) -> list[tuple[int, int]]:
    vocab = int(getattr(model.config, "vocab_size", 0) or 1)
    width = max((len(ids) for ids, _ in encoded), default=1)
    rows = max(1, min(chunk, _LOGITS_BUDGET // (width * vocab)))
    return [(s, min(s + rows, len(encoded))) for s in range(0, len(encoded), rows)]


@torch.no_grad()
def _row_losses(
    model: Any, encoded: Sequence[tuple[list[int], list[int]]], pad_id: int, chunk: int
) -> tuple[list[float], list[int], float]:
    """Each row's summed negative log-likelihood over its loss tokens, their number, and the
    sum of all of them (summed per batch)."""
    sums: list[float] = []
    counts: list[int] = []
    total = 0.0
    for start, end in _batches(model, encoded, chunk):
        batch = {k: v.to(_device(model)) for k, v in collate(encoded[start:end], pad_id).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        flat = logits.reshape(-1, logits.size(-1)), labels.reshape(-1)
        nll = torch.nn.functional.cross_entropy(*flat, ignore_index=-100, reduction="none").view(labels.shape)
        # the batch's sum as one reduction, as before per-example results: the same float as then
        total += torch.nn.functional.cross_entropy(*flat, ignore_index=-100, reduction="sum").item()
        sums += nll.sum(1).tolist()
        counts += (labels != -100).sum(1).tolist()
    return sums, counts, total


def _left_pad(prompts: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        attn[i, width - len(p) :] = 1
    return ids.to(device), attn.to(device)


def _limits(prompts: list[list[int]], max_new_tokens: int, max_length: int) -> list[int]:
    # each row's own limit: a long prompt elsewhere in the batch must not shorten it
    return [max(0, min(max_new_tokens, max_length - len(p))) for p in prompts]


@torch.no_grad()
def greedy(
    model: Any, prompts: list[list[int]], max_new_tokens: int, max_length: int, pad_id: int, stops: set[int]
) -> list[list[int]]:
    """Greedy decoding of left-padded prompts by ``generate`` with a KV cache: deterministic,
    one forward pass of one token per new token. A row's output ends with its stop token when
    it produced one, and never exceeds its own limit (``max_length`` minus its prompt)."""
    limits = _limits(prompts, max_new_tokens, max_length)
    out: list[list[int]] = [[] for _ in prompts]
    for group in _fitting_groups([len(p) for p in prompts], limits, max_length):
        gens = _generate(model, [prompts[i] for i in group], [limits[i] for i in group], pad_id, stops)
        for i, g in zip(group, gens, strict=True):
            out[i] = g
    return out


def _fitting_groups(lengths: list[int], limits: list[int], max_length: int) -> list[list[int]]:
    """Rows grouped by prompt length so that each group's padded width plus its new tokens fits
    ``max_length``: a model's position table may end there. Rows are independent, so the
    grouping changes no token; on short prompts there is one group."""
    groups: list[list[int]] = []
    group: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if group and lengths[i] + max(limits[j] for j in [*group, i]) > max_length:
            groups.append(group)
            group = []
        group.append(i)
    return [*groups, group] if group else groups


def _generate(model: Any, prompts: list[list[int]], limits: list[int], pad_id: int, stops: set[int]) -> list[list[int]]:
    from transformers import GenerationConfig

    steps = max(limits, default=0)
    if steps == 0:
        return [[] for _ in prompts]
    ids, attn = _left_pad(prompts, pad_id, _device(model))
    # a fresh config: a checkpoint's own generation_config (sampling, temperature) must not apply
    config = GenerationConfig(
        max_new_tokens=steps,
        do_sample=False,
        num_beams=1,
        eos_token_id=sorted(stops),
        pad_token_id=pad_id,
        use_cache=True,
    )
    new = model.generate(input_ids=ids, attention_mask=attn, generation_config=config)[:, ids.shape[1] :].tolist()
    out = []
    for row, limit in zip(new, limits, strict=True):
        row = row[:limit]  # the batch ran to its longest limit; a row stops at its own
        end = next((k for k, t in enumerate(row) if t in stops), None)
        out.append(row if end is None else row[: end + 1])
    return out


@torch.no_grad()
def greedy_uncached(
    model: Any, prompts: list[list[int]], max_new_tokens: int, max_length: int, pad_id: int, stops: set[int]
) -> list[list[int]]:
    """The reference for ``greedy``: the whole sequence through the model for every new token
    (no cache, quadratic in the answer's length). Kept to test ``greedy`` against and to
    measure it (experiments/eval_speed.py); not used by the proxy."""
    ids, attn = _left_pad(prompts, pad_id, _device(model))
    out: list[list[int]] = [[] for _ in prompts]
    limits = _limits(prompts, max_new_tokens, max_length)
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


def _exact_match(model: Any, tok: Any, items: Sequence[HeldoutItem], max_new: int, max_length: int, chunk: int):
    stops = tok.stop_ids()
    correct: list[bool] = []
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        gens = greedy(model, [it.ids[: it.prompt] for it in part], max_new, max_length, tok.pad_id, stops)
        for g, it in zip(gens, part, strict=True):
            stopped = bool(g) and g[-1] in stops
            correct.append(stopped and tok.decode(g).strip() == it.reference.strip())
    return correct


def _choice(model: Any, items: Sequence[HeldoutItem], pad_id: int, chunk: int) -> list[bool]:
    rows = [c for it in items for c in it.choices]
    sums, counts, _ = _row_losses(model, rows, pad_id, chunk)
    mean = [s / max(n, 1) for s, n in zip(sums, counts, strict=True)]  # minus the mean log-likelihood
    correct, k = [], 0
    for it in items:
        scores = mean[k : k + len(it.choices)]
        k += len(it.choices)
        # the first best on ties: candidates are deduplicated, so a tie is two different texts
        correct.append(min(range(len(scores)), key=scores.__getitem__) == it.answer)
    return correct


def evaluate_examples(
    model: Any,
    tok: Any,
    heldout: Mapping[str, Sequence[HeldoutItem]],
    *,
    metrics: Mapping[str, str],
    max_new: Mapping[str, int],
    max_length: int,
    chunk: int = 64,
) -> dict[str, AbilityEval]:
    """Every held-out example's results, per ability (module doc)."""
    was_training = model.training
    model.eval()
    out: dict[str, AbilityEval] = {}
    try:
        for ability, items in heldout.items():
            metric = metrics[ability]
            sums, counts, total = _row_losses(model, [(it.ids, it.mask) for it in items], tok.pad_id, chunk)
            correct: list[bool] | None = None
            if metric == "exact_match":
                correct = _exact_match(model, tok, items, max_new[ability], max_length, chunk)
            elif metric == "choice":
                correct = _choice(model, items, tok.pad_id, chunk)
            losses = [s / max(n, 1) for s, n in zip(sums, counts, strict=True)]
            out[ability] = AbilityEval(losses=losses, tokens=counts, correct=correct, metric=metric, total=total)
    finally:
        model.train(was_training)
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
    """``{ability: {"loss": ..., metric: ...}}``: the means of ``evaluate_examples``; the second
    key (``exact_match`` or ``choice``) only where ``metrics`` asks for it."""
    per = evaluate_examples(model, tok, heldout, metrics=metrics, max_new=max_new, max_length=max_length, chunk=chunk)
    return {a: e.scores() for a, e in per.items()}
