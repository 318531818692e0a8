from pathlib import Path

import pytest
import yaml

from allocator.config import OptimizeConfig, load_config
from allocator.errors import UserError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def test_default_yaml_is_the_embedded_default():
    assert load_config(EXPERIMENTS / "default.yaml") == OptimizeConfig() == load_config(None)


def _leaves(d, prefix=()):
    items = d.items() if isinstance(d, dict) else enumerate(d)
    for k, v in items:
        if isinstance(v, dict) or (isinstance(v, list) and v and all(isinstance(x, dict) for x in v)):
            yield from _leaves(v, (*prefix, k))
        else:
            yield (*prefix, k), v


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_yaml_loads_with_every_value_it_sets(path):
    raw = yaml.safe_load(path.read_text())
    resolved = load_config(path).to_dict()
    for keys, value in _leaves(raw):
        got = resolved
        for k in keys:
            got = got[k]
        if keys[0] == "data" and keys[-1] == "path":  # data files are relative to the config file
            value = str(path.parent / value)
        assert got == value, f"{path.name}: {'.'.join(map(str, keys))}"


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("budgett: 5\n", "budgett: unknown key"),
        ("proxy:\n  lr_rate: 0.1\n", "proxy.lr_rate: unknown key"),
        ("budget: -5\n", "budget: Input should be greater than 0 (got -5)"),
        ("trials: many\n", "trials: Input should be a valid integer"),
        ("proxy:\n  kind: qlora2\n", "proxy.kind: Input should be 'lora', 'qlora' or 'full'"),
        ("suite:\n  abilities: [copy, poetry]\n", "unknown ability 'poetry'"),
        ("weights:\n  poetry: 1\n", "weights names ability 'poetry'"),
        ("model:\n  hidden_size: 130\n", "not divisible by num_heads"),
        ("model:\n  hidden_size: 12\n  num_heads: 4\n", "must be even (rotary embeddings)"),
        ("- 1\n- 2\n", "expected a mapping of config keys"),
        ("budget: [1\n", "invalid YAML"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path, text, expected):
    p = _write(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_config(p)
    msg = str(err.value)
    assert msg.startswith(str(p)), msg
    assert expected in msg
    assert "\n" not in msg


def test_missing_file():
    with pytest.raises(UserError, match=r"no/such\.yaml: config file not found"):
        load_config("no/such.yaml")


def test_overrides_apply_and_are_validated(tmp_path):
    p = _write(tmp_path, "budget: 300\nproxy:\n  epochs: 2\n")
    cfg = load_config(p, {"trials": 3, "ray": {"address": "127.0.0.1:6379"}})
    assert (cfg.budget, cfg.trials, cfg.proxy.epochs, cfg.ray.address) == (300, 3, 2.0, "127.0.0.1:6379")
    with pytest.raises(UserError, match="trials: Input should be greater than 0"):
        load_config(p, {"trials": 0})


def test_yaml_floats_without_a_dot_are_accepted(tmp_path):
    # PyYAML reads 6e-3 as a string; the config still takes it as the number it means
    assert load_config(_write(tmp_path, "proxy:\n  lr: 6e-3\n")).proxy.lr == pytest.approx(0.006)


def test_objective_weights_default_equal_and_partial_weights_zero_the_rest():
    cfg = OptimizeConfig(weights={"add": 2.0})
    abilities = list(cfg.suite.abilities)
    assert cfg.objective_weights(abilities)["add"] == 2.0
    assert cfg.objective_weights(abilities)["copy"] == 0.0
    assert set(OptimizeConfig().objective_weights(abilities).values()) == {1.0}


def test_resolved_config_round_trips_through_yaml():
    cfg = OptimizeConfig()
    assert load_config(None, yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


@pytest.mark.parametrize(
    ("section", "plain"),
    [("ModelConfig", "ModelSpec"), ("PretrainConfig", "PretrainRecipe"), ("ProxyConfig", "ProxyRecipe")],
)
def test_the_model_side_sections_and_the_trainers_dataclasses_agree(section, plain):
    # the trainers have no pydantic: their dataclasses must hold the same fields and defaults
    import dataclasses

    import allocator.config as config
    import trainers

    validated, dataclass = getattr(config, section), getattr(trainers, plain)
    fields = {f.name: f.default for f in dataclasses.fields(dataclass)}
    assert fields == {name: f.default for name, f in validated.model_fields.items()}
    made = validated().spec() if section == "ModelConfig" else validated().recipe()
    assert made == dataclass() and isinstance(made, dataclass)
    with pytest.raises(trainers.TrainerError, match="unknown field 'colour'"):
        dataclass.from_dict({"colour": 1})


def test_a_target_section_validates_and_reads_back():
    from allocator.config import load_config
    from allocator.errors import UserError

    cfg = load_config(None, {"target": {"workers": 2, "model": {"hidden_size": 64, "num_heads": 2}}})
    assert load_config(None, cfg.to_dict()) == cfg  # what every result stores reads back as itself
    t = cfg.for_target()
    assert t.model.hidden_size == 64 and t.proxy.kind == "full" and t.target is None
    assert t.proxy.max_new_tokens == cfg.proxy.max_new_tokens  # the proxies' scorer
    assert t.resources.cpus_per_trial == cfg.target.cpus_per_worker
    # a partial target.model changes the default target's shape, not a bare ModelConfig's
    heads = load_config(None, {"target": {"model": {"num_heads": 8}}}).target.model
    assert (heads.hidden_size, heads.num_heads, heads.intermediate_size) == (256, 8, 512)
    assert load_config(None, {"target": {}}).target.pretrain.lr == 1e-3  # half the proxy's 2e-3
    steps = load_config(None, {"target": {"pretrain": {"steps": 5}}}).target.pretrain
    assert (steps.steps, steps.lr) == (5, 1e-3)
    assert load_config(None).target is None  # the embedded default confirms on the proxy only
    for target, message in [
        ({"batch_size": 2, "workers": 4}, "target: batch_size 2 is smaller than workers 4"),
        ({"model": {"name_or_path": "x"}, "pretrain": {"steps": 3}}, "target: pretrain.steps: a target model"),
        ({"kind": "dpo"}, "target.kind"),
        ({"workerz": 2}, "target.workerz: unknown key"),
    ]:
        with pytest.raises(UserError, match=message.replace(".", r"\.").replace("(", r"\(")):
            load_config(None, {"target": target})
