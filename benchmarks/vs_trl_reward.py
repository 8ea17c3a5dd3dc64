"""The rewards of `benchmarks/vs_trl.py`, one piece of code for both toolkits.

Both sides score a response by its prompt row's `verifier` spec, exactly as rlvr's `Sampler.score` does: the
rlvr side through its verifier pool, the TRL side by calling `row_reward` in its reward function. So the same
text always gets the same reward on both sides.

- natural regime: the row's verifier is rlvr's `math` verifier (+1 right, -1 wrong).
- informative regime: the row's verifier is `benchmarks.vs_trl_reward:EvenLengthVerifier`, +1 when the
  response has an even number of characters, else -1. It knows nothing of maths; it exists so that almost
  every group of n samples holds both rewards (all n alike has probability 2 / 2^n: 0.8% at n = 8), so that
  no group has advantage 0 and rlvr's skipped backward of such groups cannot enter the speed ratio.

Imported by spec (`benchmarks.vs_trl_reward:EvenLengthVerifier`) in rlvr's verifier workers and by the TRL
side's script; it needs only the `verifiers` package (sympy, latex2sympy2_extended, math-verify).
"""

from __future__ import annotations

from typing import Any

from verifiers import Result, get_verifier

EVEN_LENGTH_SPEC = "benchmarks.vs_trl_reward:EvenLengthVerifier"


class EvenLengthVerifier:
    """+1 for a response of even length (in characters, as decoded), -1 otherwise; status ok / wrong."""

    def __init__(self, reward_correct: float = 1.0, reward_wrong: float = -1.0, **_: Any) -> None:
        self.reward_correct, self.reward_wrong = float(reward_correct), float(reward_wrong)

    def verify(self, response: str, reference: str, sample: Any = None) -> Result:
        even = len(response) % 2 == 0
        return Result(even, self.reward_correct if even else self.reward_wrong, "ok" if even else "wrong")


_VERIFIERS: dict[str, Any] = {}


def row_reward(response: str, answer: str, verifier: str, meta: dict[str, Any] | None) -> float:
    """The reward rlvr's sampler gives `response` for a row with this gold, verifier spec and meta: the
    verifier's reward, and -1 (rlvr's reward_wrong) when the verifier raises, as rlvr's pool scores it."""
    if verifier not in _VERIFIERS:
        _VERIFIERS[verifier] = get_verifier(verifier)
    try:
        return float(_VERIFIERS[verifier].verify(response, answer, meta or {}).reward)
    except Exception:  # the pool's "error" status: the verifier's failure, scored as wrong
        return -1.0
