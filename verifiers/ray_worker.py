"""`VerifierWorker`: a Ray actor that owns a `VerifierPool` in its own process.

`VerifierWorker` is exported already decorated with `ray.remote`, so callers write

    worker = VerifierWorker.options(num_cpus=4).remote(verifier="math", num_workers=4)
    results: list[Result] = ray.get(worker.verify_batch.remote([(response, reference), ...]))

Give the actor as many CPUs as it has pool workers: Ray's default of one CPU does not account for the
processes the pool starts. The actor is synchronous (one call at a time); to verify in parallel across
machines, start several actors. For verification inside one process without Ray, use `VerifierPool`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from verifiers.base import Result
from verifiers.pool import Item, VerifierPool


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
    ) -> None:
        self.pool = VerifierPool(verifier, num_workers, soft_timeout_s, hard_timeout_s, verifier_kwargs)

    def verify_batch(self, items: Sequence[Item]) -> list[Result]:
        """One Result per (response, reference[, sample]) item, in order."""
        return self.pool.verify_batch(items)

    def status_counts(self) -> dict[str, int]:
        return self.pool.status_counts

    def reset_counts(self) -> None:
        self.pool.reset_counts()

    def health(self) -> dict[str, Any]:
        """Liveness and configuration, for monitoring: the pid and pool workers of this actor."""
        return {
            "pid": os.getpid(),
            "num_workers": self.pool.num_workers,
            "worker_pids": self.pool.worker_pids,
            "replacements": self.pool.replacements,
            "soft_timeout_s": self.pool.soft_timeout_s,
            "hard_timeout_s": self.pool.hard_timeout_s,
        }

    def close(self) -> None:
        """Stops the pool's processes; the actor itself stays until `ray.kill` or its handle goes."""
        self.pool.close()
