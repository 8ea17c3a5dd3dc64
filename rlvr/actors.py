"""The Ray actors of one training run, started from the recipe's resources, behind plain methods.

The driver loop calls `generate`, `verify`, `update`, `sync_weights` and `save`; how the work is split over
rollout workers, verifier workers and learner ranks lives here, out of the loop.
"""

from __future__ import annotations

from typing import Any

import ray
import torch

from rlvr.algorithm import logprob_mismatch
from rlvr.config import RecipeConfig
from rlvr.learner import Learner, TrainBatch, make_batch
from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rlvr.submit import free_ports
from rollout.types import Rollout
from rollout.worker import RolloutWorker
from verifiers.base import Result
from verifiers.ray_worker import VerifierWorker


def _split(items: list[Any], parts: int) -> list[list[Any]]:
    size = -(-len(items) // parts)
    return [items[i * size : (i + 1) * size] for i in range(parts)]


def engine_options(recipe: RecipeConfig, worker: int = 0) -> dict[str, Any]:
    """The vLLM engine's settings from `rollout.*` (the torch engine takes none)."""
    if recipe.rollout.engine != "vllm":
        return {}
    r = recipe.rollout
    return {
        "dtype": r.dtype,
        "max_model_len": r.max_model_len,
        "gpu_memory_utilization": r.gpu_memory_utilization,
        "seed": recipe.run.seed + worker,
    }


class TrainingActors:
    """Learner ranks, rollout workers and verifier workers for one run."""

    def __init__(
        self, recipe: RecipeConfig, model_config: Megrez2Config, eos_token_id: int, pad_token_id: int
    ) -> None:
        res, optim = recipe.resources, recipe.optim.model_dump()
        algorithm = recipe.algorithm.model_dump()
        ranks = res.learner_workers
        url = f"tcp://127.0.0.1:{free_ports(1)[0]}"  # single-node rendezvous for the DP process group
        learner_cls = ray.remote(num_cpus=1, num_gpus=res.gpus_per_learner)(Learner)
        initial = None
        if recipe.model.path:  # every rank starts from the checkpoint (e.g. the SFT warm start)
            initial = ray.put(Megrez2ForCausalLM.from_pretrained(recipe.model.path).state_dict())
        device = "cuda" if res.gpus_per_learner > 0 else "cpu"
        self.learners = [
            learner_cls.remote(
                model_config,
                optim,
                algorithm,
                rank=r,
                world_size=ranks,
                init_method=url,
                seed=recipe.run.seed,
                device=device,
                fsdp=res.fsdp,
                initial_state=initial,
            )
            for r in range(ranks)
        ]
        state = self._full_state()
        state_ref = ray.put(state)
        self.rollout_workers = [
            RolloutWorker.options(num_cpus=1, num_gpus=res.gpus_per_rollout_worker).remote(
                recipe.rollout.engine,
                model_config,
                state_ref,
                eos_token_id,
                pad_token_id,
                options=engine_options(recipe, worker=i),
            )
            for i in range(recipe.rollout.workers)
        ]
        v = recipe.verifier
        kwargs = {"reward_correct": v.reward_correct, "reward_wrong": v.reward_wrong, **v.options}
        self.verifier_workers = [
            VerifierWorker.options(num_cpus=res.cpus_per_verifier_worker).remote(
                verifier=v.name,
                num_workers=v.workers,
                soft_timeout_s=v.soft_timeout_s,
                hard_timeout_s=v.hard_timeout_s,
                verifier_kwargs=kwargs,
            )
        ]

    def generate(
        self, prompts: list[list[int]], n: int, max_new_tokens: int, temperature: float, seed: int
    ) -> list[Rollout]:
        """n rollouts per prompt, prompt-major, prompts spread over the rollout workers."""
        shards = _split(list(range(len(prompts))), len(self.rollout_workers))
        futures = [
            worker.generate.remote([prompts[i] for i in shard], n, max_new_tokens, temperature, seed + k)
            for k, (worker, shard) in enumerate(zip(self.rollout_workers, shards, strict=True))
            if shard
        ]
        rollouts: list[Rollout] = []
        for shard, part in zip([s for s in shards if s], ray.get(futures), strict=True):
            for r in part:
                r.prompt_index = shard[r.prompt_index]
                rollouts.append(r)
        return rollouts

    def verify(self, items: list[tuple[str, str, dict[str, Any] | None]]) -> list[Result]:
        shards = _split(items, len(self.verifier_workers))
        futures = [w.verify_batch.remote(s) for w, s in zip(self.verifier_workers, shards, strict=True) if s]
        return [r for part in ray.get(futures) for r in part]

    def update(self, batch: TrainBatch) -> dict[str, float]:
        """One learner step; each rank takes a contiguous shard of the sequences."""
        shards = torch.arange(len(batch)).chunk(len(self.learners))
        metrics = ray.get(
            [lr.train_step.remote(batch.rows(s)) for lr, s in zip(self.learners, shards, strict=True)]
        )
        return metrics[0]  # loss metrics are all-reduced: every rank reports the same numbers

    def parity_probe(
        self, prompts: list[list[int]], max_new_tokens: int, temperature: float, seed: int
    ) -> dict[str, float]:
        """Engine vs learner logprobs of the same sampled tokens on fixed prompts (after a weight sync)."""
        if temperature != 1.0:  # the engine's logprobs are of the tempered distribution, the learner's not
            raise ValueError("the parity probe compares at temperature 1.0")
        rollouts = ray.get(
            self.rollout_workers[0].generate.remote(prompts, 1, max_new_tokens, temperature, seed)
        )
        batch = make_batch(rollouts, torch.zeros(len(rollouts)))
        learner = ray.get([lr.logprobs.remote(batch) for lr in self.learners])[0]  # all ranks (FSDP)
        return logprob_mismatch(learner, batch.behaviour_logp, batch.response_mask)

    def sync_weights(self) -> float:
        """Rank 0's weights into every rollout engine, in place; returns the slowest sync in seconds."""
        state_ref = ray.put(self._full_state())
        return max(ray.get([w.update_weights.remote(state_ref) for w in self.rollout_workers]))

    def _full_state(self) -> dict[str, torch.Tensor]:
        # every rank must take part (with FSDP the shards are gathered); rank 0's copy is used
        return ray.get([lr.state_dict.remote() for lr in self.learners])[0]

    def save(self, path: str) -> None:
        ray.get([lr.save.remote(path) for lr in self.learners])

    def load(self, path: str) -> None:
        ray.get([lr.load.remote(path) for lr in self.learners])

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for part in ray.get([w.status_counts.remote() for w in self.verifier_workers]):
            for key, value in part.items():
                counts[key] = counts.get(key, 0) + value
        return counts

    def shutdown(self) -> None:
        ray.get([lr.close.remote() for lr in self.learners])
        ray.get([w.close.remote() for w in self.verifier_workers])
        for actor in [*self.learners, *self.rollout_workers, *self.verifier_workers]:
            ray.kill(actor)
