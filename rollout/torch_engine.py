"""`TorchEngine`: batched sampling with the native Megrez2 module and its KV cache.

The fallback engine (`rollout.engine: torch`) and the reference the vLLM engine is checked against. All
n samples of all prompts decode as one left-padded batch: one prefill, then one token per step for every
row until each has produced EOS or `max_new_tokens`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from rlvr.model.megrez2 import KVCache, Megrez2ForCausalLM
from rlvr.model.sampling import processed_logits
from rollout.types import Rollout, Seeds, check_temperature, compact_routes, repeat_samples, seeds_of_samples


class TorchEngine:
    """Samples from `model` at a temperature and nucleus (`rlvr.model.sampling`), the distribution the
    learner scores; stops at any of the stop tokens (the first of which is the EOS)."""

    def __init__(
        self,
        model: Megrez2ForCausalLM,
        eos_token_id: int | Sequence[int],
        pad_token_id: int = 0,
        device: str | torch.device = "cpu",
        max_batch_size: int = 256,
        capture_routing: bool = False,
    ) -> None:
        if capture_routing and not model.config.moe_layer_ids:
            raise ValueError("capture_routing: the model has no MoE layer, so there is no routing to capture")
        self.capture_routing = capture_routing  # return each rollout's experts (`Rollout.routing`)
        self.model = model.to(device).eval()
        self.stop_token_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        self.eos_token_id = self.stop_token_ids[0]
        self.pad_token_id = pad_token_id
        self.device = torch.device(device)
        self.max_batch_size = max_batch_size
        self.weight_version = 0

    @torch.no_grad()
    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        seed: Seeds = None,
        top_p: float = 1.0,
    ) -> list[Rollout]:
        """n samples per prompt, ordered prompt-major (all samples of prompt 0, then prompt 1, ...). Each
        sample draws from its own generator, seeded by (prompt seed, sample index): see `rollout.types`.
        Temperature 0 is `generate_greedy`'s argmax decoding, repeated n times."""
        if check_temperature(temperature):  # 0: argmax decoding, every sample of a prompt the same
            return repeat_samples(self.generate_greedy(prompts, max_new_tokens), n)
        jobs = [(p, s) for p in range(len(prompts)) for s in range(n)]
        seeds = seeds_of_samples(seed, len(prompts), n)
        rollouts: list[Rollout] = []
        for start in range(0, len(jobs), self.max_batch_size):
            chunk = jobs[start : start + self.max_batch_size]
            rows = [prompts[p] for p, _ in chunk]
            generators = [self._generator(None if seeds is None else seeds[p][s]) for p, s in chunk]
            responses = self._decode(rows, max_new_tokens, temperature, generators, top_p)
            for (p, s), (ids, logprobs, reason, routing) in zip(chunk, responses, strict=True):
                rollouts.append(Rollout(p, s, list(prompts[p]), ids, logprobs, reason, routing=routing))
        return rollouts

    @torch.no_grad()
    def generate_greedy(self, prompts: list[list[int]], max_new_tokens: int) -> list[Rollout]:
        """Argmax decoding (for evaluation and parity checks); logprobs are the model's at temperature 1."""
        responses = self._decode(prompts, max_new_tokens, 0.0, None, 1.0)
        return [
            Rollout(i, 0, list(p), ids, lp, reason, routing=routing)
            for i, (p, (ids, lp, reason, routing)) in enumerate(zip(prompts, responses, strict=True))
        ]

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else torch.seed() % 2**63)
        return generator

    def _decode(
        self,
        rows: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        generators: list[torch.Generator] | None,
        top_p: float,
    ) -> list[tuple[list[int], list[float], str, torch.Tensor | None]]:
        batch = len(rows)
        out, cache = self._prefill(rows, max_new_tokens)
        logits = out.logits[:, -1]
        routes = [out.expert_indices] if self.capture_routing else None  # (L, B, T, K) per forward
        tokens = torch.zeros(batch, max_new_tokens, dtype=torch.long, device=self.device)
        logprobs = torch.zeros(batch, max_new_tokens, device=self.device)
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=self.device)
        stop_ids = torch.tensor(self.stop_token_ids, device=self.device)
        for t in range(max_new_tokens):
            log_dist = torch.log_softmax(processed_logits(logits, temperature or 1.0, top_p), dim=-1)
            if generators is not None:  # one draw per row from the row's own stream
                probs = log_dist.exp()
                token = torch.cat(
                    [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)]
                )
            else:
                token = log_dist.argmax(dim=-1)
            tokens[:, t] = token
            logprobs[:, t] = log_dist.gather(1, token[:, None]).squeeze(1)
            stopped = torch.isin(token, stop_ids) & ~done
            lengths[stopped] = t + 1
            done |= stopped
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            out = self.model(token[:, None], cache=cache)
            logits = out.logits[:, -1]
            if routes is not None:
                routes.append(out.expert_indices)
        routing = self._routing(routes, rows, lengths) if routes is not None else [None] * batch
        results = []
        for i in range(batch):
            length = int(lengths[i])
            reason = "stop" if int(tokens[i, length - 1]) in self.stop_token_ids else "length"
            results.append((tokens[i, :length].tolist(), logprobs[i, :length].tolist(), reason, routing[i]))
        return results

    def _prefill(self, rows: list[list[int]], max_new_tokens: int) -> tuple[Any, KVCache]:
        """The prompts, left-padded so that every row's next token goes in the same slot, through the model
        into a fresh cache with room for `max_new_tokens` more."""
        batch, longest = len(rows), max(len(r) for r in rows)
        ids = torch.full((batch, longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros(batch, longest, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, longest - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, longest - len(row) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        dtype = next(self.model.parameters()).dtype
        cache = KVCache.allocate(self.model.config, batch, longest + max_new_tokens, dtype, self.device)
        return self.model(ids, attention_mask=mask, cache=cache), cache

    def _routing(
        self, routes: list[torch.Tensor], rows: list[list[int]], lengths: torch.Tensor
    ) -> list[torch.Tensor]:
        """Each row's experts at every fed position, prompt then response but the last token
        (`Rollout.routing`): the prefill's (after the row's left padding), then one per decode step."""
        fed_LBSK = torch.cat(routes, dim=2).cpu()
        longest, experts = max(len(r) for r in rows), self.model.config.n_routed_experts
        out = []
        for i, row in enumerate(rows):
            rows_LSK = fed_LBSK[:, i, longest - len(row) : longest + int(lengths[i]) - 1]
            out.append(compact_routes(rows_LSK.permute(1, 0, 2).contiguous(), experts))
        return out

    def update_weights(self, state: dict[str, Any]) -> float:
        """Loads a full state dict in place (no restart); returns the seconds it took."""
        start = time.perf_counter()
        expected = set(self.model.state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:  # checked first, so a bad sync leaves the old weights intact
            raise ValueError(f"weight sync: missing {missing[:5]}, unexpected {unexpected[:5]}")
        self.model.load_state_dict(state, strict=True)
        self.weight_version += 1
        return time.perf_counter() - start

    def health(self) -> dict[str, Any]:
        return {"engine": "torch", "device": str(self.device), "weight_version": self.weight_version}
