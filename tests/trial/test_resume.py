"""What a resumed job reads back, without a job: the config's digest, a trial's record, the
sampler's state and its digest."""

import hashlib
import pickle

import pytest

from allocator.errors import UserError
from allocator.trial import resume as rs
from allocator.trial.record import Status, TrialRecord


def test_the_digest_ignores_where_ray_runs_and_how_the_store_is_reached_and_nothing_else():
    cfg = {"budget": 10, "ray": {"address": None}, "tracking": {"uri": "sqlite:///a.db", "experiment": "x"}}
    same = {**cfg, "ray": {"address": "head:6379"}, "tracking": {"uri": "http://127.0.0.1:5000", "experiment": "x"}}
    assert rs.config_digest(cfg) == rs.config_digest(same)
    assert rs.config_digest(cfg) != rs.config_digest({**cfg, "budget": 11})
    assert rs.config_digest(cfg) != rs.config_digest({**cfg, "tracking": {"uri": "sqlite:///a.db", "experiment": "y"}})


def test_a_record_comes_back_as_it_was_kept():
    rec = TrialRecord("t1", "trial-001", "search", {"a": 3, "b": 7}, Status.FAILED, objective=None, error="boom")
    rec.scores, rec.attempts, rec.origin = {"a": 0.5}, 1, "tpe"
    kept = rs.record_json(rec, {"number": 4})
    back = rs.record_from_json(kept["record"])
    assert back == rec and back.status is Status.FAILED and kept["optuna"] == {"number": 4}


def test_the_sampler_state_loads_only_when_its_digest_is_the_one_the_run_recorded(tmp_path):
    tags = []
    rs.save_state(tmp_path, {"rng": [1, 2, 3]}, tags.append)
    rs.save_state(tmp_path, {"rng": [4, 5, 6]}, tags.append)
    files = sorted((tmp_path / "allocator-state").iterdir())
    assert [f.name for f in files] == [tags[-1].split()[0]]  # the older state is gone once the newer is named
    assert rs.load_state(tmp_path, tags[-1], "run") == {"rng": [4, 5, 6]}
    assert rs.load_state(tmp_path, None, "run") is None  # a job without a sampler (a grid)
    # the file replaced by another pickle (one that would run code when loaded): refused unread
    files[0].write_bytes(pickle.dumps(print))
    with pytest.raises(UserError, match="is not the file the job wrote"):
        rs.load_state(tmp_path, tags[-1], "run")
    files[0].unlink()
    with pytest.raises(UserError, match="is missing"):
        rs.load_state(tmp_path, tags[-1], "run")
    assert tags[-1].endswith(hashlib.sha256(pickle.dumps({"rng": [4, 5, 6]})).hexdigest())
