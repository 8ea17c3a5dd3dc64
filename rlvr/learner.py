"""The learner: the Megrez2 module, AdamW, and the PPO update over one step's rollouts.

`Learner` is a plain class; the trainer runs one per data-parallel rank as a Ray actor, built from a typed
`LearnerSpec`. Collectives live in `rlvr/parallel.py`: with several ranks each holds a shard of the step's
sequences and 2 ranks make exactly the update 1 rank makes on the whole batch.

The learner scores the distribution the rollout engine sampled from (`rlvr.model.sampling`: the rollout
temperature and top-p), so PPO's ratio, the TIS weights and the logprob gap compare like with like.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from rlvr.algorithm import (
    kl_penalty,
    loss_metrics,
    ppo_loss,
    sft_loss,
    tis_weights,
)
from rlvr.batch import TrainBatch, micro_batches, pack_rows, unpack
from rlvr.config import (
    AlgorithmConfig,
    ModelConfig,
    OptimConfig,
    RecipeConfig,
    ResourcesConfig,
    RolloutConfig,
    SFTConfig,
)
from rlvr.model.checkpoint import load_checkpoint
from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM, TokenScore, max_violation
from rlvr.optim import adamw
from rlvr.parallel import DataParallel, free_port, grad_norm
from rlvr.routing_replay import mismatch_counts, replay_indices, routing_metrics
from rlvr.seeds import derive_seed
from rlvr.sft_data import SFTBatch
from rlvr.threads import use_cores
from rollout.types import Weights


def model_config_for(recipe: RecipeConfig) -> Megrez2Config:
    """The model a recipe trains: its checkpoint's config.json, else its preset."""
    if recipe.model.path:
        return Megrez2Config.from_json(Path(recipe.model.path) / "config.json")
    return Megrez2Config.preset(recipe.model.preset or "tiny")


@dataclass(frozen=True)
class LearnerSpec:
    """What a learner rank is built from; it crosses the Ray boundary. Every default is the recipe schema's
    (`rlvr.config`); `create` validates plain dicts through it."""

    model: Megrez2Config
    optim: OptimConfig
    algorithm: AlgorithmConfig
    rollout: RolloutConfig  # temperature and top_p: the distribution the learner scores
    precision: ModelConfig  # dtype and activation_checkpointing
    resources: ResourcesConfig  # fsdp and GPUs
    seed: int

    @classmethod
    def create(
        cls,
        model: Megrez2Config,
        optim: OptimConfig | Mapping[str, Any] | None = None,
        algorithm: AlgorithmConfig | Mapping[str, Any] | None = None,
        rollout: RolloutConfig | Mapping[str, Any] | None = None,
        precision: ModelConfig | Mapping[str, Any] | None = None,
        resources: ResourcesConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> LearnerSpec:
        def typed(kind: Any, value: Any) -> Any:
            return value if isinstance(value, kind) else kind.model_validate(dict(value or {}))

        return cls(
            model,
            typed(OptimConfig, optim),
            typed(AlgorithmConfig, algorithm),
            typed(RolloutConfig, rollout),
            typed(ModelConfig, precision),
            typed(ResourcesConfig, resources),
            seed,
        )

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if self.resources.gpus_per_learner > 0 else "cpu")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """bf16 autocast (fp32 master weights and optimiser) or None for plain fp32."""
        dtype = self.precision.compute_dtype(self.device.type)
        return torch.bfloat16 if dtype == "bfloat16" else None


class Learner:
    """One data-parallel rank. `train_step` runs PPO epochs × minibatches over this rank's shard."""

    def __init__(
        self,
        spec: LearnerSpec,
        *,
        rank: int = 0,
        world_size: int = 1,
        init_method: str | None = None,
        initial_state: dict[str, Tensor] | str | Path | None = None,
    ) -> None:
        """Builds the model (every rank the same initial weights, or `initial_state`: a state dict or a
        checkpoint folder, which each rank reads itself, so the weights never pass the driver or the object
        store). With several ranks, no `init_method` and no process group yet, the rank waits for `join` (the
        trainer first asks rank 0 for its address)."""
        self.spec, self.device = spec, spec.device
        self.rank, self.world_size = rank, world_size
        use_cores(spec.resources.cpu_threads, share=world_size)  # Ray would leave an actor one thread
        torch.manual_seed(derive_seed(spec.seed, "init"))  # every rank builds the same initial weights
        config = dataclasses.replace(
            spec.model, activation_checkpointing=spec.precision.activation_checkpointing
        )
        self.model = Megrez2ForCausalLM(config).to(self.device)
        if isinstance(initial_state, (str, Path)):
            load_checkpoint(self.model, initial_state)
        elif initial_state is not None:
            self.model.load_state_dict(initial_state)
        # the KL penalty's reference: a frozen copy of the start policy, only when the penalty is on
        self.reference = copy.deepcopy(self.model).eval() if spec.algorithm.kl_coef > 0 else None
        if self.reference is not None:
            self.reference.requires_grad_(False)
        self.steps = 0
        self.expert_counts: Tensor | None = None  # (L, E) this step's tokens per expert, for the load metric
        # routing mismatch counts (rlvr.routing_replay) of the step's first pass over its batch, or None
        self.routing_counts: Tensor | None = None
        if world_size == 1 or init_method is not None or torch.distributed.is_initialized():
            self.join(init_method)

    def rendezvous_address(self) -> str:
        """`tcp://IP:PORT` on this rank's node, a port free there now: where the other ranks meet rank 0."""
        import ray

        return f"tcp://{ray.util.get_node_ip_address()}:{free_port()}"

    def join(self, init_method: str | None) -> None:
        """Joins the data-parallel group at `init_method`, shards the model (FSDP2) and builds the optimiser,
        which must see the sharded parameters."""
        fsdp = self.spec.resources.fsdp
        self.parallel = DataParallel.join(self.rank, self.world_size, init_method, self.device, fsdp)
        self.parallel.shard(self.model, self.device)
        if self.reference is not None:
            self.parallel.shard(self.reference, self.device)
        o = self.spec.optim
        self.optimizer, self.scheduler = adamw(self.model, o.lr, o.betas, o.weight_decay, o.warmup_steps)

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    @property
    def fsdp(self) -> bool:
        return self.parallel.fsdp

    def _autocast(self) -> torch.autocast:
        dtype = self.spec.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def _scored(self, model: Megrez2ForCausalLM, micro: TrainBatch) -> tuple[Tensor, Tensor]:
        """(log π of the taken tokens, entropy of π), both (b, L-1) and 0 off the response, where π is the
        rollout's sampling distribution (temperature, top-p). The micro-batch runs as one packed row
        (`rlvr.batch.pack_rows`, its prompts shared with `algorithm.share_prompt`), and the LM head only at
        response positions, in chunks (`TokenScore`): the (tokens, V) logits never exist. The policy replays
        the engine's experts under `algorithm.routing_replay: rollout` (the KL reference routes itself)."""
        policy, a, r = model is self.model, self.spec.algorithm, self.spec.rollout
        packed = pack_rows(micro, a.share_prompt)
        replay = policy and packed.routing is not None and a.routing_replay == "rollout"
        at = micro.response_mask.bool()
        score = TokenScore(packed.where[:, :-1][at], micro.input_ids[:, 1:][at], r.temperature, r.top_p)
        with self._autocast():
            out = model(
                packed.input_ids,
                packing=packed.packing,
                replay_indices=replay_indices(packed.routing) if replay else None,
                score=score,
            )
        if out.expert_counts is not None and policy:  # tokens per expert per MoE layer
            counts = out.expert_counts.detach().cpu()
            self.expert_counts = counts if self.expert_counts is None else self.expert_counts + counts
        if policy and self.routing_counts is not None and out.router_choice is not None:
            choice = out.router_choice[:, 0][:, packed.where]  # back to the padded rows, (L, b, T, K)
            self.routing_counts += mismatch_counts(
                choice, micro.routing, micro.response_mask, micro.attention_mask
            )
        return unpack(out.logprobs, at), unpack(out.entropy, at)

    def _micro_batches(self, batch: TrainBatch) -> list[Tensor | None]:
        """Row indices per micro-batch (`rlvr.batch.micro_batches`). FSDP ranks gather weights in lockstep,
        so a rank with fewer micro-batches than another pads its list with None (a forward that counts 0)."""
        a = self.spec.algorithm
        micros: list[Tensor | None] = list(micro_batches(batch, a.micro_batch_tokens, a.share_prompt))
        if self.fsdp:
            micros += [None] * (self.parallel.max(len(micros), self.device) - len(micros))
        return micros

    @torch.no_grad()
    def logprobs(self, batch: TrainBatch, reference: bool = False) -> Tensor:
        """log π of the response tokens under the rollout's sampling distribution (0 elsewhere), (B, L-1),
        micro-batched; `reference` scores with the frozen KL reference."""
        model = self.reference if reference else self.model
        model.eval()
        out = torch.zeros_like(batch.response_mask)
        for rows in self._micro_batches(batch):
            if rows is None:  # FSDP lockstep: a forward whose result is not used
                self._scored(model, batch.rows(torch.tensor([0])))
                continue
            out[rows] = self._scored(model, batch.rows(rows))[0]
        return out

    def train_step(self, batch: TrainBatch) -> dict[str, float]:
        """One RL step on this rank's shard: PPO epochs × minibatches, each an optimiser step.

        With `old_logprobs: recompute` the old policy is this learner's before the update, so the first
        minibatch starts at ratio 1 whatever the engine's numerics. Its rows take the old log-probs from
        their own first forward (the weights have not moved yet), so only the other minibatches' rows need
        a separate no-grad pass; with one minibatch there is none. With `behaviour` the old policy is the
        rollout engine's sampling log-probs, as collected. The routing mismatch is counted over the policy
        before the update (the recompute and the first minibatch), or over the first epoch with `behaviour`.
        """
        batch = batch.to(self.device)
        algorithm = self.spec.algorithm
        if algorithm.routing_replay == "rollout" and batch.routing is None:
            raise ValueError(
                "algorithm.routing_replay=rollout, but the rollouts carry no routing: the engine did not "
                "capture it (engines built with capture_routing do; rlvr.actors.engine_options sets it)"
            )
        start, self.expert_counts = time.perf_counter(), None
        self.routing_counts = None if batch.routing is None else torch.zeros(4, device=self.device)
        routing = self.routing_counts
        minibatches = list(torch.arange(len(batch)).chunk(algorithm.minibatches))
        recompute = algorithm.old_logprobs == "recompute"
        if recompute and len(minibatches) > 1:  # the first minibatch's come from its own forward
            rest = torch.cat(minibatches[1:])
            batch.old_logp[rest] = self.logprobs(batch.rows(rest))
        if self.reference is not None:
            batch.ref_logp = self.logprobs(batch, reference=True)
        logprob_s = time.perf_counter() - start
        self.model.train()
        totals: dict[str, Tensor] = {}
        grad_norms, losses = [], []
        for epoch in range(algorithm.ppo_epochs):
            for i, rows in enumerate(minibatches):
                fresh = recompute and epoch == 0 and i == 0
                loss, sums, norm, old = self._optimiser_step(batch.rows(rows), fresh)
                if fresh:
                    batch.old_logp[rows] = old
                    self.routing_counts = None
                losses.append(loss)
                grad_norms.append(norm)
                for key, value in sums.items():
                    totals[key] = totals.get(key, 0) + value
            self.routing_counts = None
        self.steps += 1
        return self._step_metrics(batch, totals, losses, grad_norms, routing, start, logprob_s)

    def _step_metrics(
        self,
        batch: TrainBatch,
        totals: dict[str, Tensor],
        losses: list[float],
        grad_norms: list[float],
        routing: Tensor | None,
        start: float,
        logprob_s: float,
    ) -> dict[str, Any]:
        """The step's metrics, summed over ranks: loss sums, the engine gap, timings and throughput."""
        mask = batch.response_mask.bool() & torch.isfinite(batch.old_logp)
        gap = (batch.old_logp - batch.behaviour_logp).abs()
        stats = [torch.where(mask, gap, 0.0).sum(), mask.sum(), batch.attention_mask.sum()]
        gap_sum, gap_count, tokens = self.parallel.sum(torch.stack(stats).float()).tolist()
        totals = {k: self.parallel.sum(v.clone()) for k, v in totals.items()}
        skipped = float(totals.pop("backward_skipped")) / max(float(totals.pop("micro_batches")), 1.0)
        seconds = time.perf_counter() - start
        metrics = loss_metrics(totals)
        metrics.update(
            loss=sum(losses) / len(losses),
            grad_norm=max(grad_norms),
            lr=self.scheduler.get_last_lr()[0],
            # mean |learner − engine| logprob of the sampled tokens before the update (0 with `behaviour`)
            logprob_gap=gap_sum / max(gap_count, 1.0),
            # micro-batches whose advantages were all 0: forward only (their gradient is exactly 0)
            backward_skipped=skipped,
            time_logprob_s=logprob_s,
            time_train_s=seconds - logprob_s,
            # the step's sequence tokens (prompt + response, every rank) per second of the whole update
            learner_tokens_per_s=tokens / seconds,
            **self._load_metrics(),
            **({} if routing is None else routing_metrics(self.parallel.sum(routing))),
        )
        return metrics

    def _load_metrics(self) -> dict[str, Any]:
        """Expert load of this step's forward passes over every rank's tokens: max violation (max load −
        mean) / mean per MoE layer, and its worst layer."""
        if self.expert_counts is None:
            return {}
        counts = self.parallel.sum(self.expert_counts.to(self.device)).cpu()
        per_layer = [round(float(v), 4) for v in max_violation(counts)]
        return {"expert_load_max_violation": max(per_layer), "expert_load_max_violation_by_layer": per_layer}

    def _optimiser_step(
        self, batch: TrainBatch, fresh: bool
    ) -> tuple[float, dict[str, Tensor], float, Tensor]:
        """One optimiser step over `batch`'s micro-batches. `fresh`: the old log-probs are this forward's
        (returned, (b, L-1), for the caller to keep); else `batch.old_logp` as given."""
        num_tokens = self.parallel.sum(batch.response_mask.sum().clone()).clamp_min(1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, sums, old = 0.0, {}, batch.old_logp.clone()
        micros = self._micro_batches(batch)
        backward = self._needs_backward(batch, micros)
        for rows, grad in zip(micros, backward, strict=True):
            micro = batch.rows(torch.tensor([0]) if rows is None else rows)
            with torch.enable_grad() if grad else torch.no_grad():  # no graph where the gradient is 0
                loss, micro_sums, logp = self._micro_loss(micro, num_tokens, fresh)
            if rows is None:  # FSDP lockstep padding: its gradient must be 0 and it counts nowhere
                loss = loss * 0.0
            if grad:
                loss.backward()
            if rows is None:
                continue
            if fresh:
                old[rows] = logp.detach()
            loss_sum += float(loss.detach())
            one = torch.ones((), device=self.device)
            micro_sums.update(micro_batches=one, backward_skipped=one * (not grad))
            for key, value in micro_sums.items():
                sums[key] = sums.get(key, 0) + value
        if not any(backward):  # AdamW skips a parameter without a gradient; the skipped gradient is 0
            for p in self.model.parameters():
                p.grad = torch.zeros_like(p) if p.requires_grad else None
        self.parallel.sum_gradients(self.model)  # the loss is already divided by the global token count
        norm = grad_norm(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec.optim.grad_clip))
        if math.isfinite(norm):
            self.optimizer.step()
        self.scheduler.step()
        return float(self.parallel.sum(torch.tensor(loss_sum))), sums, norm, old

    def _needs_backward(self, batch: TrainBatch, micros: list[Tensor | None]) -> list[bool]:
        """Which micro-batches need a backward pass. With every advantage 0 (a group all right or all wrong)
        and no KL penalty, PPO's clipped loss is 0 for any policy, so its gradient is exactly 0: such a
        micro-batch only runs forward, for its metrics (about 2/3 of its cost saved; `micro_batches` keeps
        them apart from the rest). FSDP ranks gather and reduce in lockstep during backward, so there a
        micro-batch is skipped only where every rank's is."""
        if self.reference is not None:
            return [True] * len(micros)
        advantages = batch.advantages if batch.advantages.ndim == 2 else batch.advantages[:, None]
        signal_rows = ((advantages * batch.response_mask) != 0).any(1)
        signal = [rows is not None and bool(signal_rows[rows].any()) for rows in micros]
        if self.fsdp:
            signal = [
                bool(v)
                for v in self.parallel.sum(torch.tensor(signal, dtype=torch.float32, device=self.device))
            ]
        return signal

    def _micro_loss(
        self, micro: TrainBatch, num_tokens: Tensor, fresh: bool
    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """PPO's clipped loss (+ the KL penalty when on) of one micro-batch, divided by the global count;
        its token sums; and log π (b, L-1). `fresh`: the old policy is this forward's own log π."""
        a = self.spec.algorithm
        logp, entropy = self._scored(self.model, micro)
        old_logp = logp.detach() if fresh else micro.old_logp
        # a sampled token outside the learner's nucleus (top_p < 1) has log π = −inf: it takes no part, nor
        # one outside the old policy's (recomputed old log π = −inf: its ratio would be inf, its gradient NaN)
        mask = micro.response_mask.bool() & torch.isfinite(logp) & torch.isfinite(old_logp)
        is_weights = None if a.tis_cap is None else tis_weights(old_logp, micro.behaviour_logp, a.tis_cap)
        loss, sums = ppo_loss(
            logp,
            old_logp,
            micro.advantages,
            mask,
            clip_low=a.clip_low,
            clip_high=a.clip_high,
            num_tokens=num_tokens,
            is_weights=is_weights,
        )
        if micro.ref_logp is not None:
            kl_loss, sums["kl_ref"] = kl_penalty(logp, micro.ref_logp, mask, a.kl_estimator, num_tokens)
            loss = loss + a.kl_coef * kl_loss
        with torch.no_grad():
            sums["entropy"] = torch.where(mask, entropy, 0.0).sum()
            sums["outside_nucleus"] = (micro.response_mask.bool() & ~mask).sum().float()
        return loss, sums, logp

    def start_sft(self, sft: SFTConfig, total_steps: int) -> None:
        """Switches the optimiser to supervised fine-tuning: AdamW with `sft`'s lr, betas and weight decay, a
        linear warm-up, then cosine decay to `sft.min_lr_ratio` at `total_steps`. Call before `sft_step`."""
        self.sft = sft
        self.optimizer, self.scheduler = adamw(
            self.model, sft.lr, sft.betas, sft.weight_decay, sft.warmup_steps, total_steps, sft.min_lr_ratio
        )

    def sft_step(self, batch: SFTBatch) -> dict[str, float]:
        """One supervised step on this rank's rows: `sft_loss` normalised by the step's Σ weight over every
        rank (the turn or token count), clipped at `sft.grad_clip`. Returns the global loss, lr, grad norm."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._sft_loss(batch, train=True)
        self.parallel.sum_gradients(self.model)  # the loss is already divided by the global weight
        norm = grad_norm(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.sft.grad_clip))
        if math.isfinite(norm):
            self.optimizer.step()
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.steps += 1
        return {"loss": loss, "lr": lr, "grad_norm": norm}

    @torch.no_grad()
    def sft_eval(self, batch: SFTBatch) -> float:
        """The SFT loss of `batch` (this rank's rows of a held-out set) without updating: the global value."""
        self.model.eval()
        return self._sft_loss(batch, train=False)

    def _sft_loss(self, batch: SFTBatch, train: bool) -> float:
        """Forward (and backward when `train`) over micro-batches of about `sft.micro_batch_tokens` row
        tokens; the LM head runs only where a token is trained on, in chunks (`TokenScore`). Returns the
        loss summed over ranks."""
        batch = SFTBatch(*(t.to(self.device) for t in vars(batch).values()))
        normaliser = self.parallel.sum(batch.loss_weight.sum().clone()).clamp_min(1e-12)
        rows = max(1, self.sft.micro_batch_tokens // batch.input_ids.shape[1])
        total = torch.zeros((), device=self.device)
        for index in torch.arange(len(batch)).split(rows):
            micro = batch.rows(index)
            at = micro.loss_weight > 0  # (r, T-1): position t predicts token t+1
            flat = torch.arange(micro.input_ids.numel(), device=self.device).view(micro.input_ids.shape)
            score = TokenScore(flat[:, :-1][at], micro.input_ids[:, 1:][at])
            with self._autocast():
                out = self.model(micro.input_ids, document_ids=micro.document_ids, score=score)
            loss = sft_loss(out.logprobs, micro.loss_weight[at], normaliser)
            if train:
                loss.backward()
            total += loss.detach()
        return float(self.parallel.sum(total))

    def state_dict(self) -> dict[str, Tensor]:
        """Full weights for the rollout side (CPU tensors, official parameter names). With FSDP this gathers
        the shards, so every rank must call it."""
        return self.parallel.full_state(self.model)

    def state_ref(self) -> list[Any]:
        """Rank 0's full weights put into Ray's object store from this process as `Weights` (which engines
        read without a copy): one copy, instead of a trip through the driver (which would unpickle and put
        them again). In a one-element list, so that Ray
        hands the reference on rather than its value; other ranks return []. Every rank must call it."""
        import ray

        state = self.state_dict()
        return [ray.put(Weights.of(state))] if self.rank == 0 else []

    def save(self, path: str) -> None:
        """Model (official layout) plus optimiser, scheduler and RNG states; every rank must call it. Rank 0
        writes the model; optimiser state is written per rank when sharded, once otherwise."""
        full = self.state_dict()
        if self.rank == 0:
            Megrez2ForCausalLM.from_state_dict(self.spec.model, full).save_pretrained(path)
        if self.rank == 0 or self.fsdp:
            state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "steps": self.steps,
                "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(),
            }
            torch.save(state, self._state_file(path))
        self.parallel.barrier()

    def _state_file(self, path: str) -> str:
        return f"{path}/learner_state_rank{self.rank}.pt" if self.fsdp else f"{path}/learner_state.pt"

    def load(self, path: str) -> None:
        """Model, optimiser, scheduler and RNG states from `save`'s folder (every rank calls it)."""
        self.parallel.load_full_state(self.model, Megrez2ForCausalLM.from_pretrained(path).state_dict())
        state = torch.load(self._state_file(path), weights_only=False)  # our own file: RNG states inside
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps = int(state["steps"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])

    def close(self) -> None:
        self.parallel.close()
