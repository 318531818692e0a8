"""QLoRA on this machine's CPU: gradients through the 4-bit base after an evaluation pass equal
those of a dequantized float32 reference (the avx512_bf16 trap of ../shared/PLATFORM.md, with
its workaround), and a QLoRA proxy runs end to end. Skipped, with the reason, where
bitsandbytes cannot run 4-bit on this CPU."""

import copy

import pytest
import torch

from trainers import ModelRef, ModelSpec, ProxyRecipe
from trainers.evaluation import HeldoutItem, collate, evaluate
from trainers.proxy import load_proxy, run_proxy, wrap_lora
from trainers.quantization import cpu_4bit_problem
from trainers.tokenizer import load_tokenizer_dir, prompt_length

from ..helpers import hf_model

pytestmark = pytest.mark.skipif(cpu_4bit_problem() is not None, reason=f"QLoRA on this CPU: {cpu_4bit_problem()}")
RECIPE = ProxyRecipe(kind="qlora", epochs=2, batch_size=4, reports=1, max_new_tokens=4, lr=1e-2)


def _has_avx512_bf16() -> bool:
    try:
        return "avx512_bf16" in open("/proc/cpuinfo").read()
    except OSError:
        return False


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return hf_model(tmp_path_factory.mktemp("qlora") / "model", hidden=64)


@pytest.fixture(scope="module")
def tok(folder):
    return load_tokenizer_dir(str(folder))


def _examples(tok, n):
    from allocator.data import Turn

    out = []
    for k in range(n):
        ids, mask = tok.encode_turns([Turn("user", f"repeat {k} abc"), Turn("assistant", f"abc {k}")])
        out.append((ids, mask))
    return out


def _lora_grads(model, batch):
    model.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _reference(folder, quantized, recipe):
    """The same network in float32: every 4-bit weight dequantized, the same LoRA weights."""
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    deq = {}
    for name, m in quantized.named_modules():
        if isinstance(m, bnb.nn.Linear4bit):
            w = bnb.functional.dequantize_4bit(m.weight.data, m.weight.quant_state).float()
            deq[name.removeprefix("base_model.model.").replace(".base_layer", "") + ".weight"] = w
    state = ref.state_dict()
    assert deq and set(deq) <= set(state)
    ref.load_state_dict({**state, **deq})
    ref = wrap_lora(ref, recipe)
    lora = {k: v for k, v in quantized.state_dict().items() if "lora_" in k}
    missing = ref.load_state_dict(lora, strict=False)
    assert not missing.unexpected_keys
    return ref


def test_qlora_gradients_after_an_evaluation_equal_a_dequantized_float32_reference(folder, tok):
    import bitsandbytes as bnb

    torch.manual_seed(0)
    pm = load_proxy(ModelRef(ModelSpec(name_or_path=str(folder), max_length=64)), tok, RECIPE)
    net = pm.net
    four_bit = [m for m in net.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit and all(not m.support_avx512bf16_for_cpu for m in four_bit)  # the workaround is on
    with torch.no_grad():  # LoRA's B starts at 0, which would leave A's gradients 0: make both count
        for n, p in net.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    train = _examples(tok, 8)
    held = [HeldoutItem(ids, m, prompt_length(m), "x") for ids, m in train[:4]]
    evaluate(net, tok, {"a": held}, metrics={"a": "exact_match"}, max_new={"a": 3}, max_length=64)  # the trap's trigger
    net.train()
    batch = collate(train, tok.pad_id)
    got = _lora_grads(net, batch)
    want = _lora_grads(_reference(folder, net, RECIPE).train(), batch)
    assert set(got) == set(want) and len(got) >= 14  # A and B of every adapted layer
    for name, g in got.items():
        err = float((g - want[name]).norm() / want[name].norm())
        assert err < 2e-3, (name, err)

    if not _has_avx512_bf16():
        print("this CPU has no avx512_bf16: the trap the workaround avoids cannot be shown here")
        return
    # without the workaround, the same check fails on this CPU: the test can tell the difference
    broken = copy.deepcopy(net)
    for m in broken.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = True
    broken.eval()
    with torch.no_grad():
        broken(**{k: v for k, v in batch.items() if k != "labels"})
    broken.train()
    bad = _lora_grads(broken, batch)
    errors = [float((bad[n] - want[n]).norm() / want[n].norm()) if n in bad else float("inf") for n in want]
    assert max(errors) > 0.1, errors


def test_the_cpu_check_leaves_a_seeded_run_s_random_numbers_alone():
    # it runs once per worker process, after the run seeded torch: a run's LoRA init must not
    # depend on whether it was the process's first
    cpu_4bit_problem.cache_clear()
    torch.manual_seed(0)
    assert cpu_4bit_problem() is None
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


def test_a_qlora_proxy_runs_end_to_end_on_the_cpu(folder, tok):
    ref = ModelRef(ModelSpec(name_or_path=str(folder), max_length=64))
    train = _examples(tok, 12)
    held = {"copy": [HeldoutItem(ids, m, prompt_length(m), f"abc {k}") for k, (ids, m) in enumerate(train[:4])]}
    seen = []
    result = run_proxy(
        model=ref,
        tokenizer=tok.spec(),
        train={"copy": train},
        heldout=held,
        metrics={"copy": "exact_match"},
        max_new={"copy": 4},
        mixture={"copy": 12},
        recipe=RECIPE,
        seed=0,
        report=lambda step, scores, perf: seen.append((step, perf)),
    )
    assert result.steps == 6 and [s for s, _ in seen] == [6]
    assert seen[0][1]["tokens_per_s"] > 0 and result.tokens == 2 * sum(len(ids) for ids, _ in train)  # 2 epochs
    assert result.scores["copy"]["loss"] > 0
