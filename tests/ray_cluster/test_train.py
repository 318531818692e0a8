"""A data-parallel fine-tune on Ray Train (ray_cluster.train) of trainers' loop, launched from a
Tune trial on this machine's CPUs: 2 workers, gloo."""

import hashlib
import json

import pytest

from trainers import ModelSpec, PretrainRecipe, ProxyRecipe, build_or_load_base
from trainers.tokenizer import CharTokenizer

SPEC = ModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
TOK = CharTokenizer()


def _loop(config):
    """One Ray Train worker: the proxy loop, data-parallel; its rank, tokens and weights to a file."""
    import torch.distributed as dist
    from ray import train

    from trainers.proxy import run_proxy

    def report(step, scores, perf):
        train.report({"step": step, **{f"loss/{a}": s["loss"] for a, s in scores.items()}})

    digest = {}

    def checkpoint(net):
        h = hashlib.sha256()
        for _, p in sorted(net.state_dict().items()):
            h.update(p.detach().cpu().numpy().tobytes())
        digest["weights"] = h.hexdigest()

    result = run_proxy(**config["proxy"], report=report, checkpoint=checkpoint)
    rank = dist.get_rank()
    with open(f"{config['out']}/rank-{rank}.json", "w") as f:
        json.dump({"tokens": result.tokens, "steps": result.steps, **digest, "scores": result.scores}, f)


@pytest.mark.usefixtures("ray_session")
def test_two_ray_train_workers_train_one_model_on_different_data(tmp_path, cache_dir):
    from ray import tune

    from allocator.config import OptimizeConfig
    from allocator.data.pools import encode_pools, load_records
    from ray_cluster.train import LAUNCHER_CPUS, fit_data_parallel
    from trainers.proxy import run_proxy

    base = build_or_load_base(SPEC, PretrainRecipe(steps=5, batch_size=4), tok=TOK, threads=1).ref(SPEC)
    cfg = OptimizeConfig.model_validate({"suite": {"abilities": ["copy", "add"], "pool_size": 40, "heldout_size": 4}})
    pools = encode_pools(load_records(cfg), TOK, max_length=64, truncation="right", max_new_tokens=4, max_repeats=1)
    proxy = {
        "model": base,
        "tokenizer": TOK.spec(),
        "train": pools.train,
        "heldout": pools.heldout,
        "metrics": pools.metrics,
        "max_new": pools.max_new,
        "mixture": {"copy": 16, "add": 16},
        "recipe": ProxyRecipe(kind="full", epochs=1, batch_size=8, reports=1),
        "seed": 0,
    }
    alone = run_proxy(**proxy)

    def trial(params):
        fit_data_parallel(
            _loop, params["loop"], workers=2, cpus_per_worker=0.9, storage_path=str(tmp_path / "train"), name="dp"
        )

    loop = {"proxy": proxy, "out": str(tmp_path)}
    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": LAUNCHER_CPUS}),
        param_space={"loop": loop},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0),
    )
    (result,) = tuner.fit()
    assert result.error is None, result.error
    assert result.metrics["step"] == alone.steps and "loss/copy" in result.metrics  # rank 0's report reached Tune
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["steps"] for r in ranks] == [alone.steps] * 2
    # each rank trained on its half of every global batch: together, the one process's tokens
    assert all(r["tokens"] > 0 for r in ranks) and sum(r["tokens"] for r in ranks) == alone.tokens
    # gradients averaged over the ranks: one model, the same weights on both after training
    assert ranks[0]["weights"] == ranks[1]["weights"]
    # rank 0 evaluates; its scores are the single-process run's kind of scores
    assert set(ranks[0]["scores"]) == {"copy", "add"} and ranks[1]["scores"] == {}
