"""`TorchEngine`: batched sampling with the native Megrez2 module and its KV cache.

The fallback engine (`rollout.engine: torch`) and the reference the vLLM engine is checked against. All
n samples of all prompts decode as one left-padded batch: one prefill, then one token per step for every
row until each has produced EOS or `max_new_tokens`.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from rlvr.model.megrez2 import KVCache, Megrez2ForCausalLM
from rollout.types import Rollout


class TorchEngine:
    """Samples from `model` at a given temperature with no top-p/top-k, so the behaviour distribution is the
    softmax the learner scores (at temperature 1.0 exactly the policy)."""

    def __init__(
        self,
        model: Megrez2ForCausalLM,
        eos_token_id: int,
        pad_token_id: int = 0,
        device: str | torch.device = "cpu",
        max_batch_size: int = 256,
    ) -> None:
        self.model = model.to(device).eval()
        self.eos_token_id = eos_token_id
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
        seed: int | None = None,
    ) -> list[Rollout]:
        """n samples per prompt, ordered prompt-major (all samples of prompt 0, then prompt 1, ...)."""
        if temperature <= 0:
            raise ValueError("temperature must be > 0 (greedy decoding is `generate_greedy`)")
        jobs = [(p, s) for p in range(len(prompts)) for s in range(n)]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else torch.seed() % 2**63)
        rollouts: list[Rollout] = []
        for start in range(0, len(jobs), self.max_batch_size):
            chunk = jobs[start : start + self.max_batch_size]
            rows = [prompts[p] for p, _ in chunk]
            responses = self._decode(rows, max_new_tokens, temperature, generator)
            for (p, s), (ids, logprobs, reason) in zip(chunk, responses, strict=True):
                rollouts.append(Rollout(p, s, list(prompts[p]), ids, logprobs, reason))
        return rollouts

    @torch.no_grad()
    def generate_greedy(self, prompts: list[list[int]], max_new_tokens: int) -> list[Rollout]:
        """Argmax decoding (for evaluation and parity checks); logprobs are the model's at temperature 1."""
        responses = self._decode(prompts, max_new_tokens, 0.0, None)
        return [
            Rollout(i, 0, list(p), ids, lp, reason)
            for i, (p, (ids, lp, reason)) in enumerate(zip(prompts, responses, strict=True))
        ]

    def _decode(
        self,
        rows: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        generator: torch.Generator | None,
    ) -> list[tuple[list[int], list[float], str]]:
        batch, longest = len(rows), max(len(r) for r in rows)
        ids = torch.full((batch, longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros(batch, longest, dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every row's next token goes in the same slot
            ids[i, longest - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, longest - len(row) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        dtype = next(self.model.parameters()).dtype
        cache = KVCache.allocate(self.model.config, batch, longest + max_new_tokens, dtype, self.device)
        logits = self.model(ids, attention_mask=mask, cache=cache).logits[:, -1]
        tokens = torch.zeros(batch, max_new_tokens, dtype=torch.long, device=self.device)
        logprobs = torch.zeros(batch, max_new_tokens, device=self.device)
        done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        lengths = torch.full((batch,), max_new_tokens, dtype=torch.long, device=self.device)
        for t in range(max_new_tokens):
            log_dist = torch.log_softmax(logits.float() / (temperature or 1.0), dim=-1)
            if temperature > 0:
                token = torch.multinomial(log_dist.exp(), 1, generator=generator).squeeze(1)
            else:
                token = log_dist.argmax(dim=-1)
            tokens[:, t] = token
            logprobs[:, t] = log_dist.gather(1, token[:, None]).squeeze(1)
            stopped = (token == self.eos_token_id) & ~done
            lengths[stopped] = t + 1
            done |= stopped
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            logits = self.model(token[:, None], cache=cache).logits[:, -1]
        out = []
        for i in range(batch):
            length = int(lengths[i])
            reason = (
                "stop"
                if length <= max_new_tokens and tokens[i, length - 1] == self.eos_token_id
                else "length"
            )
            out.append((tokens[i, :length].tolist(), logprobs[i, :length].tolist(), reason))
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
