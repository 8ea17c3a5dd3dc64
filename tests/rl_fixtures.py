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
