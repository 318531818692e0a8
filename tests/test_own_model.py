"""Bring your own model: a real Hugging Face model folder (``save_pretrained``) as the proxies'
base, through the real CLI, and every refusal of a model that cannot be used honestly."""

import json

import pytest
import yaml

from allocator.cli import main
from allocator.config import load_config
from allocator.trial.runner import WORKER_ENV

from .helpers import data_config, hf_model, job_runs, succeeded

ABILITIES = {"arith", "copying", "story"}
SECRET = "hf_notarealtoken_but_it_must_never_be_logged"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return hf_model(tmp_path_factory.mktemp("own-model") / "model")


def _config(tmp_path, model_dir, **top):
    """The user-data config (tests.helpers.data_config) on the model folder: no built-in shape,
    no pretraining; 2 LoRA trials."""
    path = data_config(tmp_path, **{"trials": 2, "budget": 600, **top})
    cfg = yaml.safe_load(path.read_text())
    cfg["model"] = {"name_or_path": str(model_dir), "max_length": 64, **cfg.get("model_extra", {})}
    cfg.pop("pretrain")
    cfg.pop("model_extra", None)
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_the_chat_template_gives_the_ids_and_the_loss_mask_token_by_token(model_dir):
    from allocator.data import Turn
    from trainers.tokenizer import load_tokenizer_dir

    tok = load_tokenizer_dir(str(model_dir))
    assert tok.pad_id == tok.eos_id  # the folder's tokenizer has no pad token: <eos> pads
    turns = [Turn("user", "add 2+3"), Turn("assistant", "5"), Turn("user", "repeat ab"), Turn("assistant", "ab")]
    ids, mask = tok.encode_turns(turns)
    msgs = [{"role": t.role, "content": t.content} for t in turns]
    rendered = tok.tok.apply_chat_template(msgs, tokenize=False)
    assert ids == tok.tok(rendered, add_special_tokens=False)["input_ids"]
    # the loss falls on each assistant turn's text and its closing tokens, nothing else
    masked = [tok.tok.decode([i]) for i, m in zip(ids, mask, strict=True) if m]
    assert "".join(masked) == "5<|im_end|>\nab<|im_end|>\n"
    assert tok.eos_id in tok.stop_ids() and tok.tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_id


def test_optimize_study_and_confirm_on_a_model_folder(tmp_path, model_dir, call_cli, ray_session, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    config = _config(tmp_path, model_dir)
    proc = call_cli("optimize", "--config", str(config), "--tracking-uri", uri, "--output", "o.json", cwd=tmp_path)
    out = succeeded(proc, tmp_path / "o.json")
    assert f"base model: {model_dir}" in proc.stdout and "(loaded by each worker)" in proc.stdout
    assert len(out["trials"]) == 3 and all(t["status"] == "FINISHED" for t in out["trials"])
    assert all(sum(t["mixture"].values()) <= 600 for t in out["trials"])  # tokens of this tokenizer
    assert set(out["base_scores"]) == ABILITIES and out["base_model"]["params"] == 39_072
    assert out["config"]["model"]["name_or_path"] == str(model_dir) and "hidden_size" not in out["config"]["model"]
    parent, children = job_runs(uri, out["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED" and len(children) == 3
    for r in children.values():
        assert r.info.status == "FINISHED"
        assert {f"score/{a}" for a in ABILITIES} <= set(r.data.metrics)
        assert r.data.metrics["perf/tokens_per_s"] > 0
    # the resolved config reads back as the same config (no built-in shape next to name_or_path)
    assert load_config(None, out["config"]).to_dict() == out["config"]

    # a study and its confirmation on the same model: a grid of 1 volume, 1 seed
    study = {"volumes": [0, 8], "seeds": 1, "designs": ["joint"], "bootstrap": 10}
    scfg = _config(tmp_path, model_dir, study=study, budget_unit="examples", budget=24)
    proc = call_cli("study", "--config", str(scfg), "--tracking-uri", uri, "--output", "s.json", cwd=tmp_path)
    s = succeeded(proc, tmp_path / "s.json")
    assert [r["name"] for r in s["runs"]] == ["joint-v8-s0"] and s["runs"][0]["status"] == "FINISHED"
    proc = call_cli(
        "confirm", "--config", str(scfg), "--from", "s.json", "--budget", "24", "--seeds", "1",
        "--tracking-uri", uri, "--output", "c.json", cwd=tmp_path,
    )  # fmt: skip
    c = succeeded(proc, tmp_path / "c.json")
    assert c["runs"] and all(r["status"] == "FINISHED" for r in c["runs"])

    # the token given to the workers is logged nowhere: not in the store, results or artifacts
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
    # the hub token travels with a hub model's reference (Ray logs its runtime environment), the
    # hub's cache location with the environment
    assert "HF_TOKEN" not in WORKER_ENV and "HF_HOME" in WORKER_ENV


def _bin_only(tmp_path, model_dir):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    folder.mkdir()
    for f in model_dir.iterdir():
        if f.name != "model.safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(str(model_dir / "model.safetensors")), folder / "pytorch_model.bin")
    return str(folder)


def _remote_code(tmp_path, model_dir):
    folder = tmp_path / "custom"
    folder.mkdir()
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg.update(model_type="mything", auto_map={"AutoModelForCausalLM": "modeling_mything.MyThing"})
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    return str(folder)


def _encoder(tmp_path, model_dir):
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert"
    BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize(
    ("make", "model_extra", "expected"),
    [
        (_bin_only, {}, r"only pickled weights \(pytorch_model\.bin\); allocator loads safetensors only"),
        (_remote_code, {}, r"its model runs its own code \(auto_map in config\.json\); set model\.trust_remote_code"),
        (
            lambda t, m: "someorg/some-model",
            {},
            r"someorg/some-model: not a local folder, and the Hugging Face hub is "
            r"offline",
        ),
        (_encoder, {}, r"BertModel is not a causal language model"),
        (lambda t, m: str(t / "nowhere"), {}, r"nowhere: no such folder"),
        (lambda t, m: str(m), {"hidden_size": 64}, r"model: .*hidden_size describes the built-in model"),
        (lambda t, m: str(m), {"tokenizer": "bpe"}, r"model: .*tokenizer describes the built-in model"),
        (lambda t, m: str(m), {"max_length": 1024}, r"model\.max_length 1024 exceeds the 256 positions of"),
    ],
    ids=["bin-only", "remote-code", "hub-offline", "not-causal", "missing", "shape-field", "tokenizer-field", "long"],
)
def test_a_model_that_cannot_be_used_exits_2_and_writes_nothing(
    tmp_path, model_dir, monkeypatch, capsys, make, model_extra, expected
):
    import re

    path = data_config(tmp_path, trials=1)
    cfg = yaml.safe_load(path.read_text())
    cfg["model"] = {"name_or_path": make(tmp_path, model_dir), **model_extra}
    cfg.pop("pretrain")
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()  # what building the bad folder printed
    code = main(["optimize", "--config", str(path), "--output", "o.json"])
    err = capsys.readouterr().err
    assert code == 2
    (line,) = err.strip().splitlines()
    assert re.search(expected, line), line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "o.json").exists()
    assert not (tmp_path / "allocator_runs").exists()


def test_a_pretrain_section_next_to_a_pretrained_model_is_refused(tmp_path, model_dir):
    from allocator.errors import UserError

    with pytest.raises(UserError, match=r"pretrain\.steps: the pretrain step builds the built-in model"):
        load_config(None, {"model": {"name_or_path": str(model_dir)}, "pretrain": {"steps": 5}})
    # the embedded default's config with a model override is not refused for its defaults
    from allocator.config import resolve_config

    cfg = resolve_config(load_config(None), {"model": {"name_or_path": str(model_dir)}})
    assert cfg.model.name_or_path == str(model_dir)


def test_qlora_without_a_gpu_is_refused_up_front_where_this_cpu_cannot_run_it(tmp_path, model_dir, monkeypatch, capsys):
    # the check itself runs for real in tests/trainers/test_qlora.py; here, what the job does with
    # its answer on a machine whose CPU fails it
    import trainers.quantization

    monkeypatch.setattr(trainers.quantization, "cpu_4bit_problem", lambda: "bitsandbytes cannot be imported (test)")
    path = _config(tmp_path, model_dir, proxy={"kind": "qlora", "epochs": 1})
    monkeypatch.chdir(tmp_path)
    code = main(["optimize", "--config", str(path), "--output", "o.json"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "proxy.kind qlora: resources.gpus_per_trial is 0 and bitsandbytes cannot be imported" in line
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "o.json").exists()
