"""What a rollout engine returns, whichever engine it is (native torch or vLLM)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import torch

from rlvr.seeds import derive_seed, sample_seed

FinishReason = Literal["stop", "length"]
Seeds = int | Sequence[int] | None


def prompt_seeds(seed: Seeds, count: int) -> list[int] | None:
    """One stream seed per prompt: a list is used as given (the trainer derives it from the run seed, step
    and prompt index); an int is the root of `count` derived streams; None leaves sampling unseeded."""
    if seed is None:
        return None
    if isinstance(seed, int):
        return [derive_seed(seed, "rollout", 0, p) for p in range(count)]
    if len(seed) != count:
        raise ValueError(f"{len(seed)} seeds for {count} prompts")
    return [int(s) for s in seed]


def seeds_of_samples(seed: Seeds, count: int, n: int) -> list[list[int]] | None:
    """[prompt][sample] stream seeds (see `rlvr.seeds`)."""
    seeds = prompt_seeds(seed, count)
    return None if seeds is None else [[sample_seed(s, i) for i in range(n)] for s in seeds]


@dataclass
class Rollout:
    """One sampled completion of one prompt.

    `logprobs[t]` is the behaviour log-probability of `response_ids[t]` under the distribution it was sampled
    from (temperature included), which PPO's importance ratio needs. `finish_reason` is "stop" when the
    response ended with EOS (kept as its last token) and "length" when it hit `max_new_tokens`.

    `routing` (engines built with `capture_routing`) is the experts the engine routed each fed token to:
    (P + R - 1, L, K) for P prompt and R response tokens, L MoE layers, K experts per token; row t is
    position t of prompt + response. The last response token is never fed back, so it has no row. uint8 when
    the model has at most 256 experts, else int16 (`compact_routes`).
    """

    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    info: dict[str, Any] = field(default_factory=dict)
    routing: torch.Tensor | None = None


def compact_routes(indices: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Expert ids in the narrowest integer type that holds them (a rollout's routing crosses Ray)."""
    return indices.to(torch.uint8 if num_experts <= 256 else torch.int16)


def check_temperature(temperature: float) -> bool:
    """Whether `generate` decodes greedily: temperature 0 is argmax decoding (seeds and top_p do not matter:
    the most probable token is always inside the nucleus); below 0 is a ValueError."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy decoding), got {temperature}")
    return temperature == 0


def repeat_samples(greedy: list[Rollout], n: int) -> list[Rollout]:
    """n copies of each prompt's greedy rollout, prompt-major with sample indices 0..n-1: what `generate`
    returns at temperature 0, where every sample of a prompt is the same."""
    return [
        replace(r, sample_index=s, response_ids=list(r.response_ids), logprobs=list(r.logprobs))
        for r in greedy
        for s in range(n)
    ]


class RolloutEngine(Protocol):
    """The interface every engine implements; `RolloutWorker` wraps one in a Ray actor."""

    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        seed: Seeds = None,
        top_p: float = 1.0,
    ) -> list[Rollout]: ...

    def update_weights(self, state: dict[str, Any]) -> float: ...

    def health(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Weights:
    """Full model weights as they cross Ray on a sync: each tensor's raw bytes as a numpy array, which Ray's
    object store hands to a reader without a copy (numpy is zero-copy there, torch tensors are unpickled into
    the reader's heap). An engine then copies them once, into its own parameters, straight from the shared
    pages. bf16 travels as bytes too (numpy has no bf16)."""

    data: dict[str, Any]  # name -> 1-D uint8 numpy array
    meta: dict[str, tuple[str, tuple[int, ...]]]  # name -> (torch dtype name, shape)

    @classmethod
    def of(cls, state: dict[str, torch.Tensor]) -> Weights:
        data, meta = {}, {}
        for name, tensor in state.items():
            t = tensor.detach().cpu().contiguous()
            data[name] = t.view(-1).view(torch.uint8).numpy()
            meta[name] = (str(t.dtype).removeprefix("torch."), tuple(t.shape))
        return cls(data, meta)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The state dict, as read-only views of the shared bytes: load it, never write into it."""
        out = {}
        with warnings.catch_warnings():  # a non-writable array: the views are only read (copied from)
            warnings.simplefilter("ignore", UserWarning)
            for name, array in self.data.items():
                dtype, shape = self.meta[name]
                out[name] = torch.from_numpy(array).view(getattr(torch, dtype)).view(shape)
        return out


def state_of(weights: Weights | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict from either form an engine may be given."""
    return weights.tensors() if isinstance(weights, Weights) else weights
