"""The learner: the Megrez2 module, AdamW, and the PPO update over one step's rollouts.

`Learner` is a plain class; the trainer runs one per data-parallel rank as a Ray actor. With several ranks
each holds a shard of the step's sequences, the token count is summed over ranks before the loss divides by
it, and gradients are summed with `all_reduce` (gloo on CPU, NCCL on GPU), so 2 ranks make exactly the update
1 rank makes on the whole batch.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from rlvr.algorithm import entropy_from_logits, loss_metrics, ppo_loss, tis_weights
from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM, token_logprobs
from rollout.types import Rollout


@dataclass
class TrainBatch:
    """Rollouts as right-padded tensors. Position t of the `*_BT1` fields scores token t+1 of `input_ids`."""

    input_ids: Tensor  # (B, L) prompt + response, right-padded
    attention_mask: Tensor  # (B, L) 1 = real token
    response_mask: Tensor  # (B, L-1) 1 where the predicted token is a response token
    old_logp: Tensor  # (B, L-1) PPO's old-policy logprobs of response tokens, 0 elsewhere
    advantages: Tensor  # (B,) one advantage per sequence, applied to each of its tokens
    behaviour_logp: Tensor  # (B, L-1) the rollout engine's logprobs, as sampled (old_logp starts as these)

    def rows(self, index: Tensor) -> TrainBatch:
        return TrainBatch(*(t[index] for t in self.__dict__.values()))

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def make_batch(rollouts: list[Rollout], advantages: Tensor, pad_token_id: int = 0) -> TrainBatch:
    """Packs rollouts (prompt + response, behaviour logprobs) into a right-padded `TrainBatch`."""
    length = max(len(r.prompt_ids) + len(r.response_ids) for r in rollouts)
    batch = len(rollouts)
    ids = torch.full((batch, length), pad_token_id, dtype=torch.long)
    attention = torch.zeros(batch, length, dtype=torch.long)
    response = torch.zeros(batch, length - 1)
    old = torch.zeros(batch, length - 1)
    for i, r in enumerate(rollouts):
        p, n = len(r.prompt_ids), len(r.response_ids)
        ids[i, : p + n] = torch.tensor(r.prompt_ids + r.response_ids)
        attention[i, : p + n] = 1
        response[i, p - 1 : p - 1 + n] = 1
        old[i, p - 1 : p - 1 + n] = torch.tensor(r.logprobs)
    return TrainBatch(ids, attention, response, old, advantages.float(), old.clone())


class Learner:
    """One data-parallel rank. `train_step` runs PPO epochs × minibatches over this rank's shard."""

    def __init__(
        self,
        model_config: Megrez2Config,
        optim: dict[str, Any],
        algorithm: dict[str, Any],
        *,
        rank: int = 0,
        world_size: int = 1,
        init_method: str | None = None,
        seed: int = 0,
        micro_batch_size: int = 16,
        initial_state: dict[str, Tensor] | None = None,
        device: str = "cpu",
        fsdp: bool = False,
    ) -> None:
        self.rank, self.world_size = rank, world_size
        if world_size > 1 and not dist.is_initialized():
            backend = "nccl" if device.startswith("cuda") else "gloo"
            dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
        torch.manual_seed(seed)  # every rank builds the same initial weights
        self.device = torch.device(device)
        self.model = Megrez2ForCausalLM(model_config).to(self.device)
        if initial_state is not None:
            self.model.load_state_dict(initial_state)
        self.fsdp = fsdp and world_size > 1
        if self.fsdp:
            self._shard()
        self.algorithm = algorithm
        self.micro_batch_size = int(algorithm.get("micro_batch_size", micro_batch_size))
        self.grad_clip = float(optim.get("grad_clip", 1.0))
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=float(optim["lr"]),
            betas=tuple(optim.get("betas", (0.9, 0.999))),
            weight_decay=float(optim.get("weight_decay", 0.0)),
        )
        warmup = int(optim.get("warmup_steps", 0))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.steps = 0

    def _shard(self) -> None:
        """FSDP2 over the learner ranks: weights, gradients and AdamW state are split across ranks and
        gathered per forward. The whole model is one unit because a group's expert bank is shared by three
        layers. Gradients are summed, not averaged: the loss is already divided by the global token count."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.device.type, (self.world_size,))
        fully_shard(self.model, mesh=mesh)
        self.model.set_gradient_divide_factor(1.0)
        self.model.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no pre-multiplied sum

    def _all_reduce(self, tensor: Tensor) -> Tensor:
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def _autocast(self) -> torch.autocast:
        """bf16 autocast on GPU (fp32 master weights and optimiser); plain fp32 on CPU."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    @torch.no_grad()
    def logprobs(self, batch: TrainBatch) -> Tensor:
        """Current-policy logprobs of the response tokens (0 elsewhere), micro-batched."""
        self.model.eval()
        parts = []
        for rows in torch.arange(len(batch)).split(self.micro_batch_size):
            micro = batch.rows(rows)
            with self._autocast():
                logits = self.model(micro.input_ids, attention_mask=micro.attention_mask).logits[:, :-1]
            parts.append(token_logprobs(logits, micro.input_ids[:, 1:]) * micro.response_mask)
        return torch.cat(parts)

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """One RL step on this rank's shard: PPO epochs × minibatches, each an optimiser step.

        With `old_logprobs: recompute` the old policy is this learner's before the update (so the first
        minibatch starts at ratio 1 whatever the engine's numerics); with `behaviour` it is the rollout
        engine's sampling logprobs, as collected.
        """
        batch = TrainBatch(*(t.to(self.device) for t in batch.__dict__.values()))
        start = time.perf_counter()
        behaviour = batch.behaviour_logp
        if self.algorithm.get("old_logprobs", "recompute") == "recompute":
            batch.old_logp = self.logprobs(batch)
        logprob_s = time.perf_counter() - start
        mask = batch.response_mask.bool()
        gap = self._all_reduce(
            torch.stack([(batch.old_logp - behaviour).abs()[mask].sum(), mask.sum()]).float()
        )
        self.model.train()
        minibatches = int(self.algorithm.get("minibatches", 1))
        totals: dict[str, Tensor] = {}
        grad_norms, losses = [], []
        for _ in range(int(self.algorithm.get("ppo_epochs", 1))):
            for rows in torch.arange(len(batch)).chunk(minibatches):
                loss, sums, norm = self._optimiser_step(batch.rows(rows))
                losses.append(loss)
                grad_norms.append(norm)
                for key, value in sums.items():
                    totals[key] = totals.get(key, 0) + value
        self.steps += 1
        totals = {k: self._all_reduce(v.clone()) for k, v in totals.items()}
        metrics = loss_metrics(totals)
        metrics.update(
            loss=sum(losses) / len(losses),
            grad_norm=max(grad_norms),
            lr=self.scheduler.get_last_lr()[0],
            # mean |learner − engine| logprob of the sampled tokens before the update (0 with `behaviour`)
            logprob_gap=float(gap[0] / gap[1].clamp_min(1.0)),
            time_logprob_s=logprob_s,
            time_train_s=time.perf_counter() - start - logprob_s,
        )
        return metrics

    def _optimiser_step(self, batch: TrainBatch) -> tuple[float, dict[str, Tensor], float]:
        num_tokens = self._all_reduce(batch.response_mask.sum().clone()).clamp_min(1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        sums: dict[str, Tensor] = {}
        for rows in torch.arange(len(batch)).split(self.micro_batch_size):
            micro = batch.rows(rows)
            with self._autocast():
                logits = self.model(micro.input_ids, attention_mask=micro.attention_mask).logits[:, :-1]
            logp = token_logprobs(logits, micro.input_ids[:, 1:])
            tis_cap = self.algorithm.get("tis_cap")
            loss, micro_sums = ppo_loss(
                logp,
                micro.old_logp,
                micro.advantages,
                micro.response_mask,
                clip_low=float(self.algorithm.get("clip_low", 0.2)),
                clip_high=float(self.algorithm.get("clip_high", 0.2)),
                num_tokens=num_tokens,
                is_weights=None
                if tis_cap is None
                else tis_weights(micro.old_logp, micro.behaviour_logp, tis_cap),
            )
            with torch.no_grad():
                micro_sums["entropy"] = (entropy_from_logits(logits) * micro.response_mask).sum()
            loss.backward()
            loss_sum += float(loss.detach())
            for key, value in micro_sums.items():
                sums[key] = sums.get(key, 0) + value
        if not self.fsdp:  # (FSDP reduce-scatters gradients itself)
            for p in self.model.parameters():
                if p.grad is not None:
                    self._all_reduce(p.grad)  # the loss is already divided by the global token count: sum
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        if math.isfinite(norm):
            self.optimizer.step()
        self.scheduler.step()
        return float(self._all_reduce(torch.tensor(loss_sum))), sums, norm

    def state_dict(self) -> dict[str, Tensor]:
        """Full weights for the rollout side (CPU tensors, official parameter names). With FSDP this gathers
        the shards, so every rank must call it."""
        state = {}
        for name, value in self.model.state_dict().items():
            value = value.full_tensor() if hasattr(value, "full_tensor") else value
            state[name] = value.detach().to("cpu", copy=True)
        return state

    def save(self, path: str) -> None:
        """Model (official layout) plus optimiser, scheduler and RNG states; every rank must call it. Rank 0
        writes the model; optimiser state is written per rank when sharded, once otherwise."""
        full = self.state_dict()
        if self.rank == 0:
            with torch.device("meta"):
                plain = Megrez2ForCausalLM(self.model.config)
            plain.load_state_dict(full, assign=True)
            plain.save_pretrained(path)
        if self.rank == 0 or self.fsdp:
            state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "steps": self.steps,
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
            }
            torch.save(state, self._state_file(path))
        if self.world_size > 1:
            dist.barrier()

    def _state_file(self, path: str) -> str:
        return f"{path}/learner_state_rank{self.rank}.pt" if self.fsdp else f"{path}/learner_state.pt"

    def load(self, path: str) -> None:
        full = Megrez2ForCausalLM.from_pretrained(path).state_dict()
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(self.model, full, options=StateDictOptions(full_state_dict=True))
        else:
            self.model.load_state_dict(full)
        state = torch.load(self._state_file(path), weights_only=False)  # our own file: RNG states inside
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps = int(state["steps"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
