"""Verifiers turn a model's answer into a binary reward.

from verifiers import Result, Verifier, get_verifier, register_verifier, VerifierPool
r = get_verifier("math").verify("... \\boxed{0.5}", "\\frac12")
"""

from typing import Any

from verifiers.base import STATUSES, Result, Status, Verifier
from verifiers.registry import get_verifier, register_verifier, registered_names

__all__ = [
    "STATUSES",
    "Result",
    "Status",
    "Verifier",
    "VerifierPool",
    "VerifierWorker",
    "get_verifier",
    "register_verifier",
    "registered_names",
]


def __getattr__(name: str) -> Any:
    # Imported lazily: the pool starts processes and the worker needs Ray; neither is needed to verify inline.
    if name == "VerifierPool":
        from verifiers.pool import VerifierPool

        return VerifierPool
    if name == "VerifierWorker":
        from verifiers.ray_worker import VerifierWorker

        return VerifierWorker
    raise AttributeError(f"module 'verifiers' has no attribute {name!r}")
