"""Learner: the PPO update moves the policy the right way, and 2 data-parallel ranks equal 1 rank."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from rlvr.algorithm import group_advantages
from rlvr.batch import make_batch
from rlvr.cluster import free_ports
from rlvr.learner import Learner, LearnerSpec
from rlvr.model.megrez2 import Megrez2Config, token_logprobs
from rollout.torch_engine import TorchEngine

OPTIM = {"lr": 1e-2, "betas": (0.9, 0.99), "grad_clip": 1.0}
ALGORITHM = {"ppo_epochs": 2, "minibatches": 2, "clip_low": 0.2, "clip_high": 0.2}


def spec(optim=OPTIM, algorithm=ALGORITHM, seed: int = 0, fsdp: bool = False) -> LearnerSpec:  # noqa: ANN001
    return LearnerSpec.create(
        Megrez2Config.preset("tiny"), optim, algorithm, resources={"fsdp": fsdp}, seed=seed
    )


def rollout_batch(seed: int = 0):  # noqa: ANN201
    learner = Learner(spec(seed=seed))
    engine = TorchEngine(learner.model, eos_token_id=3)
    rollouts = engine.generate([[5, 6, 7], [9, 10], [11, 12, 13, 14]], n=4, max_new_tokens=6, seed=seed)
    rewards = torch.tensor(
        [1.0 if 42 in r.response_ids or i % 3 == 0 else -1.0 for i, r in enumerate(rollouts)]
    )
    return make_batch(rollouts, group_advantages(rewards, group_size=4))


def test_make_batch_aligns_logprobs_with_response_tokens() -> None:
    batch = rollout_batch()
    assert batch.response_mask.shape == batch.old_logp.shape == (12, batch.input_ids.shape[1] - 1)
    learner = Learner(spec())
    with torch.no_grad():
        logits = learner.model(batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
    logp = token_logprobs(logits, batch.input_ids[:, 1:])
    mask = batch.response_mask.bool()
    assert torch.allclose(logp[mask], batch.old_logp[mask], atol=1e-4)  # same weights: ratio 1


def test_update_raises_the_likelihood_of_positive_advantage_sequences() -> None:
    batch = rollout_batch()
    learner = Learner(spec({**OPTIM, "lr": 3e-3}))

    def advantage_weighted_logp() -> float:
        with torch.no_grad():
            logits = learner.model(batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        logp = token_logprobs(logits, batch.input_ids[:, 1:]) * batch.response_mask
        return float((logp.sum(1) * batch.advantages).sum())

    before = advantage_weighted_logp()
    metrics = learner.train_step(batch)
    assert advantage_weighted_logp() > before
    assert {"loss", "grad_norm", "clip_low", "clip_high", "approx_kl", "lr"} <= set(metrics)
    assert metrics["approx_kl"] >= 0 and learner.steps == 1


def test_a_token_outside_the_old_policys_nucleus_takes_no_part() -> None:
    # a recompute under top_p < 1 gives old log π = −inf to a sampled token outside the old nucleus; its ratio
    # is inf, and inf · A made the gradient NaN, so the whole optimiser step was silently dropped
    batch = rollout_batch()
    token = int(batch.response_mask[0].nonzero()[0])
    batch.old_logp[0, token] = float("-inf")
    learner = Learner(spec(algorithm={**ALGORITHM, "old_logprobs": "behaviour"}))
    before = learner.state_dict()
    metrics = learner.train_step(batch)
    assert math.isfinite(metrics["grad_norm"]) and metrics["outside_nucleus"] > 0
    assert any(not torch.equal(v, before[k]) for k, v in learner.state_dict().items())


def always_backward(learner: Learner) -> Learner:
    """The learner without the zero-advantage shortcut: every micro-batch runs backward."""
    learner._needs_backward = lambda batch, micros: [True] * len(micros)
    return learner


@pytest.mark.parametrize("zeroed", [range(4, 12), range(12)], ids=["most-groups", "every-group"])
def test_zero_advantage_micro_batches_skip_backward_and_make_the_same_update(zeroed: range) -> None:
    # 2 minibatches of 6 rows (groups of 4): the first packs group 0 (a signal) apart from rows 4-5 (zeroed),
    # the second is rows 6-11, all zeroed: it has no backward at all and AdamW must still step (decay,
    # momentum)
    optim, algorithm = {**OPTIM, "weight_decay": 0.1}, {**ALGORITHM, "micro_batch_tokens": 1000}
    skipping, dense = Learner(spec(optim, algorithm)), always_backward(Learner(spec(optim, algorithm)))
    results = []
    for learner in (skipping, dense):
        batch = rollout_batch()
        batch.advantages[list(zeroed)] = 0.0
        results.append(learner.train_step(batch))
    got, want = results
    assert got["backward_skipped"] == pytest.approx(2 / 3 if len(zeroed) == 8 else 1.0)
    assert want["backward_skipped"] == 0.0
    for key in ("loss", "grad_norm", "entropy", "approx_kl", "clip_low", "clip_high"):
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key
    initial = Learner(spec(optim, algorithm)).state_dict()
    moved = max((v - initial[k]).abs().max() for k, v in skipping.state_dict().items())
    assert moved > 1e-4  # weight decay alone moves every weight when no gradient is left
    for name, value in dense.state_dict().items():
        assert torch.equal(skipping.state_dict()[name], value), name


# rows whose advantages are zeroed in the 2-rank test: the first micro-batch of each rank's half and all of
# rank 1's, so FSDP skips a micro-batch on both ranks and rank 1 without FSDP runs no backward at all
ZEROED = [0, 1, 2, 6, 7, 8, 9, 10, 11]


@pytest.mark.slow
@pytest.mark.parametrize("fsdp", [False, True], ids=["all-reduce", "fsdp2"])
def test_two_data_parallel_ranks_make_the_one_rank_update(tmp_path: Path, fsdp: bool) -> None:
    # One minibatch per PPO epoch, so each rank's shard is its half of the same minibatch. The reference
    # runs every backward; the ranks skip the zero-advantage micro-batches.
    single = always_backward(
        Learner(spec(algorithm={**ALGORITHM, "minibatches": 1, "micro_batch_tokens": 24}))
    )
    batch = rollout_batch()
    batch.advantages[ZEROED] = 0.0
    single.train_step(batch)
    out = str(tmp_path / "rank0.pt")
    url = f"tcp://127.0.0.1:{free_ports(1)[0]}"  # a file:// store aborted a rank at exit once in four runs
    mp.start_processes(_rank_main, args=(2, url, out, fsdp), nprocs=2, join=True, start_method="spawn")
    two_ranks = torch.load(out, weights_only=True)
    initial = Learner(spec()).state_dict()
    moved = max((value - initial[name]).abs().max() for name, value in single.state_dict().items())
    assert moved > 1e-3  # the step did something; rank sums reorder float additions by ~1e-6
    for name, value in single.state_dict().items():
        # 1e-4 = 1% of one Adam step at lr 1e-2: Adam divides by |g|, so an element whose gradient is ~0
        # turns the ~1e-7 reordering noise of the rank sum into a visible (but tiny) difference
        assert torch.allclose(two_ranks[name], value, atol=1e-4), name


def _rank_main(rank: int, world: int, url: str, out: str, fsdp: bool) -> None:
    torch.set_num_threads(1)
    batch = rollout_batch()
    batch.advantages[ZEROED] = 0.0
    shard = batch.rows(torch.arange(len(batch)).view(world, -1)[rank])  # contiguous halves per rank
    algorithm = {**ALGORITHM, "minibatches": 1, "micro_batch_tokens": 24}
    learner = Learner(spec(algorithm=algorithm, fsdp=fsdp), rank=rank, world_size=world, init_method=url)
    learner.train_step(shard)
    state = learner.state_dict()  # with FSDP a collective: every rank gathers
    if rank == 0:
        torch.save(state, out)
    if fsdp:  # sharded checkpoint round trip: save on every rank, load into a fresh sharded learner
        learner.save(str(Path(out).parent))
        again = Learner(spec(algorithm=algorithm, fsdp=True, seed=1), rank=rank, world_size=world)
        again.load(str(Path(out).parent))
        reloaded = again.state_dict()
        assert all(torch.equal(reloaded[k], v) for k, v in state.items())
        assert again.steps == 1
    learner.close()
