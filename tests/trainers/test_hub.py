"""A pretrained model's checks and pin (trainers.hub) and loading it on a worker (trainers.models)."""

import socket

import pytest
import torch

from trainers import ModelRef, ModelSpec, TrainerError
from trainers.hub import is_local, resolve_model
from trainers.tokenizer import load_tokenizer_dir

from ..helpers import hf_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return hf_model(tmp_path_factory.mktemp("hub") / "model")


def test_a_folder_is_checked_counted_and_identified_by_its_weights(folder):
    from transformers import AutoModelForCausalLM

    base = resolve_model(ModelSpec(name_or_path=str(folder)))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    assert base.meta["params"] == model.num_parameters() == 39_072  # from the safetensors header alone
    assert base.meta["source"] == "folder" and base.spec.name_or_path == str(folder.resolve())
    assert resolve_model(ModelSpec(name_or_path=str(folder))).meta["digest"] == base.meta["digest"]
    # other weights in the same place are another base
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data + b" ")
    try:
        assert resolve_model(ModelSpec(name_or_path=str(folder))).meta["digest"] != base.meta["digest"]
    finally:
        weights.write_bytes(data)


def test_a_worker_loads_the_folder_itself_in_the_asked_dtype(folder):
    tok = load_tokenizer_dir(str(folder))
    ref = ModelRef(ModelSpec(name_or_path=str(folder)))
    model = ref.load(tok, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config.pad_token_id == tok.pad_id == tok.eos_id  # no pad token in the folder: <eos> pads
    assert model.config._attn_implementation == "sdpa"


def test_a_folder_a_worker_does_not_see_is_named_with_the_worker(tmp_path, folder):
    tok = load_tokenizer_dir(str(folder))
    gone = ModelRef(ModelSpec(name_or_path=str(tmp_path / "elsewhere")))
    with pytest.raises(TrainerError, match=f"no such folder on {socket.gethostname()}.*same path on every node"):
        gone.load(tok)


def test_a_hub_token_rides_with_the_reference_and_is_never_shown():
    ref = ModelRef(ModelSpec(name_or_path="someorg/gated"), token="hf_secret_value")
    assert ref.token == "hf_secret_value" and "hf_secret_value" not in repr(ref)


def test_what_is_a_path_and_what_is_a_hub_id(folder):
    assert is_local(str(folder)) and is_local("./x") and is_local("../x") and is_local("/x")
    assert not is_local("Qwen/Qwen2.5-0.5B") and not is_local("gpt2")
    with pytest.raises(TrainerError, match="the Hugging Face hub is offline"):
        resolve_model(ModelSpec(name_or_path="someorg/nothing-cached"))


HUB_SCRIPT = """
import json
from trainers import ModelRef, ModelSpec
from trainers.hub import resolve_model
from trainers.pretrain import build_or_load_tokenizer
base = resolve_model(ModelSpec(name_or_path="someorg/tiny", revision="main"))
tok = build_or_load_tokenizer(base.spec, lambda: [], "unused")
model = ModelRef(base.spec).load(tok)
print(json.dumps({"revision": base.spec.revision, "meta": base.meta, "params": model.num_parameters(),
                  "vocab": tok.vocab_size, "template": tok.chat_template is not None}))
"""


def test_a_hub_id_in_the_local_cache_loads_offline_pinned_to_its_commit(tmp_path, folder):
    # the Hugging Face cache's own layout: models--org--name/{refs/main, snapshots/<commit>/...}
    import json
    import os
    import subprocess
    import sys

    from ..helpers import ROOT

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someorg--tiny"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", HUB_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["revision"] == commit and out["meta"]["source"] == "hub-cache" and out["meta"]["commit"] == commit
    assert out["params"] == 39_072 and out["template"]
