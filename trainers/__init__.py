"""The model side: tokenizers, the built-in base, the proxy fine-tune, evaluation.

It imports torch, transformers and peft (bitsandbytes where asked) and nothing of
``allocator``, Ray or MLflow, so that a machine with only those three can run a proxy
fine-tune and an evaluation from a plain call::

    from trainers import CharTokenizer, ModelSpec, ProxyRecipe, build_or_load_base, run_proxy

    tok = CharTokenizer()
    spec = ModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    base = build_or_load_base(spec, PretrainRecipe(steps=5), tok=tok).ref(spec)
    result = run_proxy(model=base, tokenizer=tok.spec(), train={"copy": [...]}, heldout={"copy": [...]},
                       metrics={"copy": "exact_match"}, max_new={"copy": 8}, mixture={"copy": 16},
                       recipe=ProxyRecipe(epochs=2), seed=0)

Plain data in (a ``ModelRef``, a tokenizer spec, token ids and loss masks, held-out items, the
mixture, the recipe), plain results out; whoever runs it under Ray reports through the
``report`` callback. Bad input raises ``TrainerError``.

Modules: ``config`` (ModelSpec, PretrainRecipe, ProxyRecipe), ``errors``, ``tokenizer``
(tokenizers and the conversation template), ``corpus`` (generic pretraining text),
``hub`` (a pretrained model's checks and its pin to a commit), ``models`` (ModelRef,
loading the built-in or a pretrained model), ``quantization`` (QLoRA's 4-bit base and its
CPU gradient check), ``pretrain`` (building and caching the built-in base), ``proxy`` (the
fine-tune), ``evaluation`` (per-ability and per-example scores).

Your own Hugging Face model instead of the built-in one: ``ModelRef(ModelSpec(name_or_path=
"path/or/hub-id"))`` and its tokenizer ``load_tokenizer_dir(path)``; ``ProxyRecipe(kind="qlora")``
for a 4-bit base.
"""

from importlib import import_module
from typing import Any

# name -> module: loaded on first use, so that importing one module (the tokenizer, say)
# does not import torch and transformers with it
_API = {
    "ModelSpec": "config",
    "PretrainRecipe": "config",
    "ProxyRecipe": "config",
    "TrainerError": "errors",
    "AbilityEval": "evaluation",
    "HeldoutItem": "evaluation",
    "evaluate": "evaluation",
    "evaluate_examples": "evaluation",
    "PretrainedBase": "hub",
    "resolve_model": "hub",
    "ModelRef": "models",
    "load_model": "models",
    "CachedBase": "pretrain",
    "build_or_load_base": "pretrain",
    "build_or_load_tokenizer": "pretrain",
    "ProxyResult": "proxy",
    "evaluate_base": "proxy",
    "load_proxy": "proxy",
    "run_proxy": "proxy",
    "select_examples": "proxy",
    "CharTokenizer": "tokenizer",
    "HFTokenizer": "tokenizer",
    "load_tokenizer_dir": "tokenizer",
    "prompt_length": "tokenizer",
    "tokenizer_from_spec": "tokenizer",
    "truncate": "tokenizer",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'trainers' has no attribute {name!r}")
    value = getattr(import_module(f"trainers.{_API[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
