"""Evaluation: cached greedy decoding equals the uncached reference loop, multiple-choice
ranking by mean log-likelihood, per-example results."""

import random

import pytest
import torch

from allocator.config import OptimizeConfig
from allocator.data.pools import encode_pools, load_records
from trainers import ModelSpec, PretrainRecipe, ProxyRecipe, build_or_load_base, load_model
from trainers.evaluation import HeldoutItem, evaluate, evaluate_examples, greedy, greedy_uncached
from trainers.proxy import run_proxy
from trainers.tokenizer import CharTokenizer, prompt_length

TOK = CharTokenizer()
MODEL = ModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def base(cache_dir):
    return build_or_load_base(MODEL, PretrainRecipe(steps=60, batch_size=8), tok=TOK, threads=1)


def test_cached_greedy_equals_the_uncached_loop_on_the_built_in_model(base):
    # the whole built-in suite's held-out prompts, batched and left padded as evaluation does
    cfg = OptimizeConfig.model_validate({"suite": {"pool_size": 20, "heldout_size": 24}})
    pools = encode_pools(load_records(cfg), TOK, max_length=64, truncation="right", max_new_tokens=12, max_repeats=1)
    model = load_model(MODEL, base.weights, TOK).eval()
    prompts = [it.ids[: it.prompt] for items in pools.heldout.values() for it in items]
    # a prompt near max_length: its own limit is short, the others' must not be
    prompts.append(TOK.encode_prompt("x" * 58))
    new = greedy(model, prompts, 12, 64, TOK.pad_id, TOK.stop_ids())
    old = greedy_uncached(model, prompts, 12, 64, TOK.pad_id, TOK.stop_ids())
    assert new == old
    assert len(new[-1]) <= 64 - len(prompts[-1])
    assert any(len(g) > 3 for g in new)  # not a trivial agreement of empty answers


def _item(prompt: str, answer: str, options: list[str]) -> HeldoutItem:
    ids, mask = TOK.encode_example(prompt, answer)
    choices = tuple(TOK.encode_example(prompt, o) for o in options)
    return HeldoutItem(ids, mask, prompt_length(mask), answer, choices=choices, answer=options.index(answer))


def _mean_loglik(model, ids, mask):
    # one example alone, unpadded: the reference for the batched ranking
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
    picked = logits[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    keep = torch.tensor(mask[1:], dtype=torch.bool)
    return float(picked[keep].mean())


def test_choice_ranks_candidates_by_mean_log_likelihood(base):
    model = load_model(MODEL, base.weights, TOK).eval()
    rng = random.Random(0)
    items = []
    for k in range(12):
        options = ["red", "blue", "green", "a very long candidate"][: 2 + k % 3]
        rng.shuffle(options)
        items.append(_item(f"pick {k}: " + ", ".join(options), options[k % len(options)], options))
    per = evaluate_examples(model, TOK, {"quiz": items}, metrics={"quiz": "choice"}, max_new={"quiz": 8}, max_length=64)
    with torch.no_grad():
        expected = []
        for it in items:
            ll = [_mean_loglik(model, i, m) for i, m in it.choices]
            expected.append(max(range(len(ll)), key=ll.__getitem__) == it.answer)
    assert per["quiz"].correct == expected
    scores = per["quiz"].scores()
    assert scores["choice"] == sum(expected) / len(expected) and set(scores) == {"loss", "choice"}
    assert len(per["quiz"].losses) == len(items) and all(x > 0 for x in per["quiz"].losses)


def test_choice_learns_a_known_answer(base):
    # every row's answer is "blue" among shuffled options listed in its prompt: a proxy that
    # learned the ability ranks it first everywhere; the base does not
    rng = random.Random(1)

    def row(k):
        options = ["red", "blue", "green"]
        rng.shuffle(options)
        return f"color {k}? " + " ".join(options), "blue", options

    train = [TOK.encode_example(p, a) for p, a, _ in (row(k) for k in range(40))]
    held = [_item(*row(100 + k)) for k in range(12)]
    args = {"metrics": {"quiz": "choice"}, "max_new": {"quiz": 6}}
    before = evaluate(load_model(MODEL, base.weights, TOK), TOK, {"quiz": held}, max_length=64, **args)
    after = run_proxy(
        model=base.ref(MODEL),
        tokenizer=TOK.spec(),
        train={"quiz": train},
        heldout={"quiz": held},
        mixture={"quiz": 40},
        recipe=ProxyRecipe(kind="full", epochs=6, batch_size=8, lr=3e-3, reports=1),
        seed=0,
        **args,
    )
    assert after.scores["quiz"]["choice"] == 1.0
    assert before["quiz"]["choice"] < 1.0
