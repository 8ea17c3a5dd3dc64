"""The Ray actors of one training run, started from the recipe's resources, behind plain methods.

The trainer calls `generate`, `verify`, `update`, `sync_weights` and `save`; how the work is split over
rollout workers, verifier workers and learner ranks lives here, out of the step. Every actor is built from
typed objects (`LearnerSpec`, `Megrez2Config`, sections of the recipe), never from loose dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray
import torch

from rlvr.algorithm import logprob_mismatch
from rlvr.batch import TrainBatch, make_batch
from rlvr.config import RecipeConfig, VerifierConfig
from rlvr.learner import Learner, LearnerSpec
from rlvr.model.megrez2 import Megrez2Config
from rlvr.restarts import RestartBudget, gather_with_restarts
from rlvr.routing_replay import captures_routing, check_routing_replay
from rlvr.sampler import Item
from rlvr.threads import CPU_MALLOC_ENV
from rollout.types import Rollout
from rollout.worker import RolloutWorker
from verifiers.base import Result
from verifiers.ray_worker import VerifierWorker


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    size = -(-len(items) // parts)
    return [items[i * size : (i + 1) * size] for i in range(parts)]


def required_resources(recipe: RecipeConfig) -> dict[str, float]:
    """CPUs and GPUs the run's actors reserve (each learner rank and rollout worker takes one CPU)."""
    res = recipe.resources
    return {
        "CPU": res.learner_workers
        + recipe.rollout.workers
        + recipe.verifier.workers * res.cpus_per_verifier_worker,
        "GPU": res.learner_workers * res.gpus_per_learner
        + recipe.rollout.workers * res.gpus_per_rollout_worker,
    }


def engine_options(recipe: RecipeConfig) -> dict[str, Any]:
    """The engine's settings from the recipe: routing capture (both engines; `rlvr.routing_replay`), and
    vLLM's from `rollout.*`. dtype auto is the learner's compute dtype, so both sides compute in the same
    precision."""
    options: dict[str, Any] = {"capture_routing": captures_routing(recipe)}
    if recipe.rollout.engine != "vllm":
        return options
    r = recipe.rollout
    device = "cuda" if recipe.resources.gpus_per_rollout_worker > 0 else "cpu"
    learner_device = "cuda" if recipe.resources.gpus_per_learner > 0 else "cpu"
    dtype = recipe.model.compute_dtype(learner_device) if r.dtype == "auto" else r.dtype
    return {
        **options,
        "dtype": dtype if device == learner_device or r.dtype != "auto" else "auto",
        "max_model_len": r.max_model_len,
        "gpu_memory_utilization": r.gpu_memory_utilization,
    }


def learner_spec(recipe: RecipeConfig, model_config: Megrez2Config) -> LearnerSpec:
    """The typed spec every learner rank of a recipe is built from."""
    return LearnerSpec.create(
        model_config,
        recipe.optim,
        recipe.algorithm,
        recipe.rollout,
        recipe.model,
        recipe.resources,
        recipe.run.seed,
    )


def start_learners(recipe: RecipeConfig, spec: LearnerSpec) -> list[Any]:
    """`resources.learner_workers` Learner actors (one data-parallel group), each starting from
    `model.path` when the recipe has one (e.g. the SFT warm start; each rank reads the folder itself, so
    on a cluster it must be on a filesystem every node sees), else from the same seeded init."""
    res = recipe.resources
    env = None if res.gpus_per_learner else {"env_vars": CPU_MALLOC_ENV}  # rlvr.threads says why
    learner_cls = ray.remote(num_cpus=1, num_gpus=res.gpus_per_learner, runtime_env=env)(Learner)
    initial = str(recipe.model.path) if recipe.model.path else None
    ranks = res.learner_workers
    learners = [
        learner_cls.remote(spec, rank=r, world_size=ranks, initial_state=initial) for r in range(ranks)
    ]
    if ranks > 1:  # the group meets at rank 0's node (any node of a multi-node cluster), on a port free there
        url = ray.get(learners[0].rendezvous_address.remote())
        ray.get([learner.join.remote(url) for learner in learners])
    return learners


class LearnerGroup:
    """The data-parallel learner ranks of a run behind one handle, for RL and SFT alike: start, shard a batch
    over the ranks, step, save, load, close. Every method calls every rank (FSDP ranks gather and reduce in
    lockstep); results that are all-reduced are the same on every rank, so rank 0's is returned."""

    def __init__(self, recipe: RecipeConfig, spec: LearnerSpec) -> None:
        self.ranks = start_learners(recipe, spec)

    def __len__(self) -> int:
        return len(self.ranks)

    def all(self, method: str, *args: Any) -> list[Any]:
        """`method(*args)` on every rank; each rank's result."""
        return ray.get([getattr(rank, method).remote(*args) for rank in self.ranks])

    def step(self, method: str, batch: Any) -> Any:
        """`method(shard)` with each rank taking a contiguous shard of `batch`'s rows (`batch.rows`);
        rank 0's result."""
        shards = torch.arange(len(batch)).chunk(len(self.ranks))
        futures = [getattr(r, method).remote(batch.rows(s)) for r, s in zip(self.ranks, shards, strict=True)]
        return ray.get(futures)[0]

    def state_ref(self) -> Any:
        """A Ray reference to rank 0's full weights, put by rank 0 itself (they never pass the driver)."""
        return self.all("state_ref")[0][0]

    def save(self, path: str) -> None:
        """Every rank writes its part of a checkpoint into the folder `path` (model, optimiser, RNG)."""
        self.all("save", path)

    def load(self, path: str) -> None:
        """Every rank restores its part from the checkpoint folder `path` (as written by `save`)."""
        self.all("load", path)

    def close(self) -> None:
        """Closes the process group, then kills the ranks."""
        self.all("close")
        for rank in self.ranks:
            ray.kill(rank)


def start_rollout_worker(
    engine: str,
    model_config: Megrez2Config,
    state: Any,
    stop_token_ids: int | Sequence[int],
    pad_token_id: int,
    options: dict[str, Any] | None = None,
    num_gpus: float = 0,
    threads: int | None = None,
    share: int = 1,
) -> Any:
    """A `RolloutWorker` actor (one CPU, `num_gpus` GPUs) holding `state` (weights, a ref to them or a
    checkpoint folder), with `threads` torch threads (default: its node's cores over `share`). Ray restarts it
    if its process dies; the caller then reloads the current weights (`rlvr/restarts.py`)."""
    actor = RolloutWorker.options(num_cpus=1, num_gpus=num_gpus, max_restarts=-1)
    return actor.remote(engine, model_config, state, stop_token_ids, pad_token_id, options, threads, share)


def start_verifier_worker(v: VerifierConfig, num_cpus: float = 1) -> Any:
    """A `VerifierWorker` actor with `v.processes` processes per verifier: `v.name` (with `v.options`) for
    rows naming none, a pool of its own for every other verifier the rows name; rewards from `v`."""
    rewards = {"reward_correct": v.reward_correct, "reward_wrong": v.reward_wrong}
    return VerifierWorker.options(num_cpus=num_cpus, max_restarts=-1).remote(
        verifier=v.name,
        num_workers=v.processes,
        soft_timeout_s=v.soft_timeout_s,
        hard_timeout_s=v.hard_timeout_s,
        verifier_kwargs=v.options,
        shared_kwargs=rewards,
    )


class TrainingActors:
    """Learner ranks, rollout workers and verifier workers for one run."""

    def __init__(
        self,
        recipe: RecipeConfig,
        model_config: Megrez2Config,
        stop_token_ids: int | Sequence[int],
        pad_token_id: int,
    ) -> None:
        res = recipe.resources
        check_routing_replay(recipe, model_config)
        self.learners = LearnerGroup(recipe, learner_spec(recipe, model_config))
        # the engines start from the recipe's checkpoint folder when it has one (read where they run, so the
        # weights take no room in the object store), else from rank 0's seeded init. Ray restarts a dead
        # rollout worker from these constructor arguments, then the current weights are loaded into it.
        start = str(recipe.model.path) if recipe.model.path else self.learners.state_ref()
        self.state_ref = start
        self.restarts = RestartBudget(recipe.rollout.max_restarts, recipe.rollout.restart_window_s)
        self.rollout_workers = [
            start_rollout_worker(
                recipe.rollout.engine,
                model_config,
                start,
                stop_token_ids,
                pad_token_id,
                engine_options(recipe),
                res.gpus_per_rollout_worker,
                res.cpu_threads,
                recipe.rollout.workers,
            )
            for _ in range(recipe.rollout.workers)
        ]
        self.verifier_workers = [
            start_verifier_worker(recipe.verifier, res.cpus_per_verifier_worker)
            for _ in range(recipe.verifier.workers)
        ]

    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        max_new_tokens: int,
        temperature: float,
        seeds: Sequence[int] | None,
        top_p: float = 1.0,
    ) -> list[Rollout]:
        """n rollouts per prompt, prompt-major, prompts spread over the rollout workers. `seeds` has one
        stream seed per prompt, so what a prompt gets does not depend on which worker served it."""
        shards = [s for s in _split(list(range(len(prompts))), len(self.rollout_workers)) if s]

        def send(k: int) -> Any:
            shard = [prompts[i] for i in shards[k]]
            shard_seeds = None if seeds is None else [seeds[i] for i in shards[k]]
            return self.rollout_workers[k].generate.remote(
                shard, n, max_new_tokens, temperature, shard_seeds, top_p
            )

        def redo(k: int) -> Any:  # a restarted engine starts from its first weights: bring it up to date
            ray.get(self.rollout_workers[k].update_weights.remote(self.state_ref))
            return send(k)

        parts = gather_with_restarts(
            [send(k) for k in range(len(shards))], redo, self.restarts, "rollout worker"
        )
        rollouts: list[Rollout] = []
        for shard, part in zip(shards, parts, strict=True):
            for r in part:
                r.prompt_index = shard[r.prompt_index]
                rollouts.append(r)
        return rollouts

    def verify(self, items: list[Item], specs: list[str | None]) -> list[Result]:
        """One Result per (response, gold, meta) item, in order; specs[i] is item i's verifier."""
        shards = [s for s in _split(list(range(len(items))), len(self.verifier_workers)) if s]

        def send(k: int) -> Any:
            return self.verifier_workers[k].verify_batch.remote(
                [items[i] for i in shards[k]], [specs[i] for i in shards[k]]
            )

        parts = gather_with_restarts(
            [send(k) for k in range(len(shards))], send, self.restarts, "verifier worker"
        )
        return [r for part in parts for r in part]

    def update(self, batch: TrainBatch) -> dict[str, float]:
        """One learner step on `batch` (B sequences); each rank takes a contiguous shard of them. Returns the
        loss metrics (all-reduced, so every rank's are the same) and the learner's timings in seconds."""
        return self.learners.step("train_step", batch)  # all-reduced: every rank reports the same

    def parity_probe(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        seeds: Sequence[int],
        top_p: float = 1.0,
    ) -> dict[str, float]:
        """Engine vs learner logprobs of the same sampled tokens on fixed prompts (after a weight sync), both
        of the rollout's sampling distribution."""
        rollouts = ray.get(
            self.rollout_workers[0].generate.remote(prompts, 1, max_new_tokens, temperature, seeds, top_p)
        )
        batch = make_batch(rollouts, torch.zeros(len(rollouts)))
        learner = self.learners.all("logprobs", batch)[0]  # every rank takes part (FSDP)
        return logprob_mismatch(learner, batch.behaviour_logp, batch.response_mask)

    def sync_weights(self) -> float:
        """Rank 0's weights into every rollout engine, in place; returns the slowest sync in seconds."""
        self.state_ref = self.learners.state_ref()
        # a worker that died since its last call is restarted by Ray and loads the same weights
        load = lambda k: self.rollout_workers[k].update_weights.remote(self.state_ref)  # noqa: E731
        futures = [load(k) for k in range(len(self.rollout_workers))]
        return max(gather_with_restarts(futures, load, self.restarts, "rollout worker"))

    def save(self, path: str) -> None:
        """Every learner rank writes its part of a checkpoint into the folder `path`."""
        self.learners.save(path)

    def load(self, path: str) -> None:
        """Every learner rank restores its part from the checkpoint folder `path`."""
        self.learners.load(path)

    def status_counts(self) -> dict[str, int]:
        """Verifier statuses counted since the start, summed over the verifier workers."""
        counts: dict[str, int] = {}
        for part in ray.get([w.status_counts.remote() for w in self.verifier_workers]):
            for key, value in part.items():
                counts[key] = counts.get(key, 0) + value
        return counts

    def shutdown(self) -> None:
        """Closes the process groups and verifier pools, then kills every actor of the run."""
        self.learners.close()
        ray.get([w.close.remote() for w in self.verifier_workers])
        for actor in [*self.rollout_workers, *self.verifier_workers]:
            ray.kill(actor)
