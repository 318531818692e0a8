"""The proxy trainer, evaluation and base cache, on a tiny model built in the test."""

import pytest
import torch

from allocator.config import OptimizeConfig
from allocator.data.pools import encode_pools, load_records
from trainers import ModelRef, ModelSpec, PretrainRecipe, ProxyRecipe, TrainerError, build_or_load_base, load_model
from trainers.evaluation import evaluate, greedy
from trainers.proxy import run_proxy, select_examples, wrap_lora
from trainers.tokenizer import EOS, CharTokenizer

MODEL = ModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
PRETRAIN = PretrainRecipe(steps=5, batch_size=4)
TOK = CharTokenizer()


@pytest.fixture(scope="module")
def base(cache_dir):
    return build_or_load_base(MODEL, PRETRAIN, tok=TOK, threads=1)


@pytest.fixture(scope="module")
def suite():
    cfg = OptimizeConfig.model_validate(
        {"suite": {"abilities": ["first", "copy", "add"], "pool_size": 40, "heldout_size": 4}}
    )
    return encode_pools(load_records(cfg), TOK, max_length=64, truncation="right", max_new_tokens=4, max_repeats=1)


def _proxy(**kw):
    return ProxyRecipe(**{"epochs": 1, "batch_size": 4, "reports": 2, "max_new_tokens": 4, **kw})


def test_base_is_cached_by_recipe(cache_dir, base):
    weights = base.path / "model.safetensors"
    built = weights.stat().st_mtime_ns
    said = []
    again = build_or_load_base(MODEL, PRETRAIN, tok=TOK, threads=1, log=said.append)
    assert again.path == base.path and again.path.parent == cache_dir
    assert said == [] and weights.stat().st_mtime_ns == built  # found, not built again
    other = build_or_load_base(MODEL, PretrainRecipe(steps=5, batch_size=4, seed=1), tok=TOK, threads=1)
    assert other.path != base.path


def test_loaded_weights_are_the_saved_ones(base):
    a, b = load_model(MODEL, base.weights, TOK), load_model(MODEL, base.weights, TOK)
    x = torch.tensor([[1, 5, 6, 7]])
    assert torch.equal(a(input_ids=x).logits, b(input_ids=x).logits)
    assert torch.equal(a.lm_head.weight, a.model.embed_tokens.weight)


def test_loss_mask_covers_response_and_eos_only():
    tok = CharTokenizer()
    ids, mask = tok.encode_example("repeat: ab", "ab")
    assert tok.decode(ids[1:]) == "repeat: ab\nab"
    assert ids[-1] == EOS
    assert mask == [0] * (len(ids) - 3) + [1, 1, 1]


def test_left_padded_greedy_equals_one_at_a_time(base):
    # positions must count real tokens only, or left padding changes the answers
    model = load_model(MODEL, base.weights, TOK).eval()
    tok = CharTokenizer()
    prompts = [tok.encode_prompt(p) for p in ["repeat: a", "sort: dcba", "add 12+345"]]
    together = greedy(model, prompts, 5, 64, 0, {EOS})
    alone = [greedy(model, [p], 5, 64, 0, {EOS})[0] for p in prompts]
    assert together == alone
    # a prompt near max_length must not shorten the others' answers
    long = tok.encode_prompt("x" * 60)
    assert greedy(model, [*prompts, long], 5, 64, 0, {EOS})[:3] == alone
    assert len(greedy(model, [long], 5, 64, 0, {EOS})[0]) <= 64 - len(long)


def test_nested_selection(suite):
    small = select_examples(suite.records, {"first": 3, "copy": 2, "add": 0})
    large = select_examples(suite.records, {"first": 7, "copy": 5, "add": 1})
    assert set(small) <= set(large)
    with pytest.raises(TrainerError, match="pool has 40"):
        select_examples(suite.records, {"first": 41})
    cycled = select_examples(suite.records, {"first": 50}, max_repeats=2)
    assert cycled == [*suite.records["first"], *suite.records["first"][:10]]


def _run(base, suite, mixture, proxy, heldout=None, report=None):
    heldout = heldout or suite.heldout
    return run_proxy(
        model=ModelRef(MODEL, base.weights),
        recipe=proxy,
        tokenizer=TOK.spec(),
        train=suite.train,
        heldout=heldout,
        metrics={a: suite.metrics[a] for a in heldout},
        max_new=suite.max_new,
        mixture=mixture,
        seed=0,
        report=report,
    )


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_proxy_is_deterministic_and_reports(base, suite, kind):
    mixture = {"first": 10, "copy": 6, "add": 4}
    seen = []

    def run():
        return _run(base, suite, mixture, _proxy(kind=kind), report=lambda step, scores, perf: seen.append(step))

    first, second = run(), run()
    assert first.steps == 5  # ceil(20 examples * 1 epoch / batch 4)
    assert seen == [2, 5, 2, 5]  # two evaluations a run, the last at the end
    assert first.scores == second.scores
    assert set(first.scores) == {"first", "copy", "add"}
    assert all(0.0 <= s["exact_match"] <= 1.0 and s["loss"] > 0 for s in first.scores.values())


def test_a_run_shorter_than_its_reports_still_reports_them_all(base, suite):
    # a scheduler counts reports: one fewer would read as a run it stopped early
    seen = []
    result = _run(
        base, suite, {"first": 4}, _proxy(kind="lora", reports=3), report=lambda step, s, perf: seen.append((step, s))
    )
    assert result.steps == 1 and [step for step, _ in seen] == [1, 1, 1]
    assert all(s == result.scores for _, s in seen)  # one evaluation, reported three times


def test_training_lowers_heldout_loss(base, suite):
    mixture = {"first": 20, "copy": 20, "add": 0}
    heldout = {"first": suite.heldout["first"]}
    model = load_model(MODEL, base.weights, TOK)
    before = evaluate(model, TOK, heldout, metrics={"first": "loss"}, max_new={"first": 2}, max_length=64)
    assert set(before["first"]) == {"loss"}  # exact match only where the metric asks for it
    after = _run(base, suite, mixture, _proxy(kind="lora", lr=1e-2, epochs=5), heldout=heldout)
    assert after.scores["first"]["loss"] < before["first"]["loss"]


def test_lora_trains_adapters_only(base):
    model = wrap_lora(load_model(MODEL, base.weights, TOK), _proxy(kind="lora"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_scoring_the_base_refuses_lora_targets_the_model_lacks(base, suite):
    # once, before the trials: not in every trial's worker
    from trainers.proxy import evaluate_base

    job = {
        "model": ModelRef(MODEL, base.weights),
        "tokenizer": TOK.spec(),
        "heldout": {"first": suite.heldout["first"]},
        "metrics": {"first": "loss"},
        "max_new": suite.max_new,
    }
    with pytest.raises(TrainerError, match=r"proxy\.lora_target_modules"):
        evaluate_base(**job, recipe=_proxy(lora_target_modules=("no_such_proj",)))
    assert set(evaluate_base(**job, recipe=_proxy(lora_target_modules=("q_proj", "v_proj")))) == {"first"}
