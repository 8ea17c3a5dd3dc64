"""`VerifierWorker`: a Ray actor that owns a `VerifierPool` in its own process.

`VerifierWorker` is exported already decorated with `ray.remote`, so callers write

    worker = VerifierWorker.options(num_cpus=4).remote(verifier="math", num_workers=4)
    results: list[Result] = ray.get(worker.verify_batch.remote([(response, reference), ...]))

Items may name their own verifier (`verify_batch(items, specs)`): each spec gets a pool of its own, started on
first use (`verifiers/routing.py`). Give the actor as many CPUs as it has pool workers: Ray's default of one
CPU does not account for the processes the pools start. The actor is synchronous (one call at a time); to
verify in parallel across machines, start several actors. For verification inside one process without Ray,
use `VerifierRouter` or `VerifierPool`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from verifiers.base import Result
from verifiers.pool import Item
from verifiers.routing import VerifierRouter


@ray.remote
class VerifierWorker:
    """Verifies batches for the trainer; each answer runs under the pool's soft and hard time limits."""

    def __init__(
        self,
        verifier: Any = "math",
        num_workers: int = 2,
        soft_timeout_s: float = 5.0,
        hard_timeout_s: float | None = None,
        verifier_kwargs: Mapping[str, Any] | None = None,
        shared_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.router = VerifierRouter(
            verifier, num_workers, soft_timeout_s, hard_timeout_s, verifier_kwargs, shared_kwargs
        )
        self.router.pool(None)  # the default verifier starts now: a bad spec fails the actor's creation

    def verify_batch(self, items: Sequence[Item], specs: Sequence[str | None] | None = None) -> list[Result]:
        """One Result per (response, reference[, sample]) item, in order; specs[i] names item i's verifier
        (None: this worker's default)."""
        return self.router.verify_batch(items, specs)

    def status_counts(self) -> dict[str, int]:
        return self.router.status_counts()

    def reset_counts(self) -> None:
        for pool in self.router.pools.values():
            pool.reset_counts()

    def health(self) -> dict[str, Any]:
        """Liveness and configuration, for monitoring: the pid and pool workers of this actor."""
        pools = list(self.router.pools.values())
        default = self.router.pool(None)
        return {
            "pid": os.getpid(),
            "verifiers": list(self.router.pools),
            "num_workers": default.num_workers,
            "worker_pids": [pid for pool in pools for pid in pool.worker_pids],
            "replacements": sum(pool.replacements for pool in pools),
            "soft_timeout_s": default.soft_timeout_s,
            "hard_timeout_s": default.hard_timeout_s,
        }

    def close(self) -> None:
        """Stops the pools' processes; the actor itself stays until `ray.kill` or its handle goes."""
        self.router.close()
