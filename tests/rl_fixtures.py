"""Plug-in verifiers that misbehave in ways the trainer must survive (imported by spec in pool workers)."""

from __future__ import annotations

from typing import Any

from verifiers.base import Result


class NaNRewardVerifier:
    """Says "ok" with a NaN reward for responses containing "nan", +inf for "inf", else a normal wrong."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def verify(self, response: str, reference: str, sample: Any = None) -> Result:
        if "nan" in response:
            return Result(True, float("nan"), "ok")
        if "inf" in response:
            return Result(True, float("inf"), "ok")
        return Result(False, -1.0, "wrong")


class CoinVerifier:
    """Right for every fourth response it sees (a random model's responses are often identical, so their
    text cannot decide): for a model that solves nothing, half the n=2 groups are mixed and half all wrong,
    wherever the count starts. Deterministic, so a test that needs both kinds in every draw cannot flake."""

    def __init__(self, **kwargs: Any) -> None:
        self.reward_correct = kwargs.get("reward_correct", 1.0)
        self.reward_wrong = kwargs.get("reward_wrong", -1.0)
        self.seen = 0

    def verify(self, response: str, reference: str, sample: Any = None) -> Result:
        right = self.seen % 4 == 0
        self.seen += 1
        return Result(right, self.reward_correct if right else self.reward_wrong, "ok" if right else "wrong")
