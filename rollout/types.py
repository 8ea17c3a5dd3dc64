"""What a rollout engine returns, whichever engine it is (native torch or vLLM)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length"]


@dataclass
class Rollout:
    """One sampled completion of one prompt.

    `logprobs[t]` is the behaviour log-probability of `response_ids[t]` under the distribution it was sampled
    from (temperature included), which PPO's importance ratio needs. `finish_reason` is "stop" when the
    response ended with EOS (kept as its last token) and "length" when it hit `max_new_tokens`.
    """

    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    info: dict[str, Any] = field(default_factory=dict)


class RolloutEngine(Protocol):
    """The interface every engine implements; `RolloutWorker` wraps one in a Ray actor."""

    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> list[Rollout]: ...

    def update_weights(self, state: dict[str, Any]) -> float: ...

    def health(self) -> dict[str, Any]: ...
