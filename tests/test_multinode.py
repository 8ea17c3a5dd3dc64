"""Learner ranks on different nodes of a Ray cluster meet at rank 0's node address (its own module: the
cluster must be the only Ray in the process)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import ray
import torch

from rlvr.actors import learner_spec, start_learners
from rlvr.batch import make_batch
from rlvr.cluster import _single_machine_driver, secured_env, write_token
from rlvr.config import load_recipe
from rlvr.learner import Learner, LearnerSpec
from rlvr.model.megrez2 import Megrez2Config
from rollout.torch_engine import TorchEngine

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def two_node_cluster() -> Iterator[None]:
    """Two Ray nodes of one CPU each on this machine, loopback-only and with a token of their own, as every
    instance rlvr starts (rlvr.cluster); this process is their driver. The environment is restored after."""
    from ray._raylet import AuthenticationTokenLoader, Config
    from ray.cluster_utils import Cluster

    saved = dict(os.environ)
    directory = Path(tempfile.mkdtemp(prefix="rlvr-test-auth-"))
    os.environ.clear()
    os.environ.update(secured_env(saved, write_token(directory)))
    Config.initialize("")  # this process read RAY_AUTH_MODE when it imported ray
    AuthenticationTokenLoader.instance().reset_cache()
    cluster = None
    try:
        with _single_machine_driver():
            head = {"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"}
            cluster = Cluster(initialize_head=True, head_node_args=head)
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
            ray.init(address=cluster.address)
        yield
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
def test_learner_ranks_on_two_nodes_meet_at_rank_zeros_node() -> None:
    """A Ray cluster of two nodes on this machine, one CPU each, so the two learner ranks must land on
    different nodes; they meet at rank 0's node address and make one update together."""
    with two_node_cluster():
        recipe = load_recipe(
            REPO / "recipes/tiny.yaml", ["resources.learner_workers=2", "rollout.engine=torch"]
        )
        learners = start_learners(recipe, learner_spec(recipe, Megrez2Config.preset("tiny")))
        nodes = ray.get([lr.node_id.remote() for lr in learners])
        assert len(set(nodes)) == 2
        engine = TorchEngine(Learner(LearnerSpec.create(Megrez2Config.preset("tiny"))).model, eos_token_id=3)
        batch = make_batch(engine.generate([[5, 6], [7, 8]], 2, 4, seed=0), torch.tensor([1.0, -1, 1, -1]))
        shards = torch.arange(4).chunk(2)
        out = ray.get([lr.train_step.remote(batch.rows(s)) for lr, s in zip(learners, shards, strict=True)])
        assert out[0]["loss"] == out[1]["loss"]  # all-reduced over the two nodes
