"""`RolloutWorker`: a Ray actor that owns one rollout engine and serves `generate` / `update_weights`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import ray
import torch

from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rlvr.threads import use_cores
from rollout.torch_engine import TorchEngine
from rollout.types import Rollout, RolloutEngine, Seeds, Weights, state_of


def build_engine(
    engine: str,
    model_config: Megrez2Config,
    state: dict[str, torch.Tensor],
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
    options: dict[str, Any] | None = None,
) -> RolloutEngine:
    """The engine named by `rollout.engine`, holding the given weights and stopping at `eos_token_id` (one id
    or several). `options` go to the engine: capture_routing (both engines), dtype, max_model_len and
    gpu_memory_utilization (vLLM)."""
    if engine == "vllm":
        from rollout.vllm_engine import VLLMEngine  # vLLM is imported only where it is used

        return VLLMEngine.from_state(model_config, state, eos_token_id, **(options or {}))
    if engine != "torch":
        raise ValueError(f"rollout.engine {engine!r} is unknown; allowed: 'vllm', 'torch'")
    model = Megrez2ForCausalLM.from_state_dict(model_config, state)
    return TorchEngine(model, eos_token_id=eos_token_id, pad_token_id=pad_token_id, **(options or {}))


def _state(state: Weights | dict[str, torch.Tensor] | str) -> dict[str, torch.Tensor]:
    """A state dict from weights or a checkpoint folder."""
    if isinstance(state, str):
        return Megrez2ForCausalLM.from_pretrained(state).state_dict()
    return state_of(state)


@ray.remote
class RolloutWorker:
    """Samples n completions per prompt at the recipe's temperature and keeps behaviour logprobs."""

    def __init__(
        self,
        engine: str,
        model_config: Megrez2Config,
        state: Weights | dict[str, torch.Tensor] | str,
        eos_token_id: int | Sequence[int],
        pad_token_id: int = 0,
        options: dict[str, Any] | None = None,
        threads: int | None = None,
        share: int = 1,
    ) -> None:
        """`state`: weights, or a checkpoint folder read here. `threads` torch threads, else the node's cores
        split between `share` workers (`use_cores`)."""
        self.threads = use_cores(threads, share)
        # a rollout worker's vLLM says what matters (warnings and up) unless VLLM_LOGGING_LEVEL asks for more
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        self.engine = build_engine(engine, model_config, _state(state), eos_token_id, pad_token_id, options)

    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        seed: Seeds = None,
        top_p: float = 1.0,
    ) -> list[Rollout]:
        """n rollouts per prompt (prompt-major); `seed` is one stream seed per prompt (or a root int)."""
        return self.engine.generate(prompts, n, max_new_tokens, temperature, seed, top_p)

    def update_weights(self, state: Weights | dict[str, torch.Tensor] | str) -> float:
        """Loads the learner's weights (or a checkpoint folder's) in place; seconds it took."""
        return self.engine.update_weights(_state(state))

    def health(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "threads": self.threads, **self.engine.health()}
