"""`VerifierRouter`: per-row verifiers over `VerifierPool`s, one pool per verifier spec.

A prompt set names a verifier per row (GSM8K rows `numeric`, MATH rows `math`, ...). The router sends each
item to the pool of its row's spec, started on first use, and returns the results in input order. The
default spec (a recipe's `verifier.name`) takes the recipe's verifier options; every pool takes the shared
options (the rewards), since a verifier's own options mean nothing to another one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from verifiers.base import Result
from verifiers.pool import Item, VerifierPool


class VerifierRouter:
    """Pools by spec; `verify_batch(items, specs)` with specs[i] = None meaning the default verifier."""

    def __init__(
        self,
        default: str = "math",
        num_workers: int = 2,
        soft_timeout_s: float = 5.0,
        hard_timeout_s: float | None = None,
        default_kwargs: Mapping[str, Any] | None = None,
        shared_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.default = default
        self.options = {"num_workers": num_workers, "soft_timeout_s": soft_timeout_s}
        self.options["hard_timeout_s"] = hard_timeout_s
        self.shared_kwargs = dict(shared_kwargs or {})
        self.default_kwargs = {**self.shared_kwargs, **(default_kwargs or {})}
        self.pools: dict[str, VerifierPool] = {}

    def pool(self, spec: str | None) -> VerifierPool:
        """The pool of `spec` (None: the default), started on first use; a bad spec raises here."""
        spec = spec or self.default
        if spec not in self.pools:
            kwargs = self.default_kwargs if spec == self.default else self.shared_kwargs
            self.pools[spec] = VerifierPool(spec, verifier_kwargs=kwargs, **self.options)
        return self.pools[spec]

    def verify_batch(self, items: Sequence[Item], specs: Sequence[str | None] | None = None) -> list[Result]:
        """One Result per (response, reference[, sample]) item, in order; item i goes to specs[i]'s pool."""
        specs = list(specs) if specs is not None else [None] * len(items)
        if len(specs) != len(items):
            raise ValueError(f"{len(specs)} verifier specs for {len(items)} items")
        by_spec: dict[str, list[int]] = {}
        for i, spec in enumerate(specs):
            by_spec.setdefault(spec or self.default, []).append(i)
        results: list[Result | None] = [None] * len(items)
        for spec, indices in by_spec.items():
            for i, result in zip(
                indices, self.pool(spec).verify_batch([items[i] for i in indices]), strict=True
            ):
                results[i] = result
        return results  # type: ignore[return-value]

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for pool in self.pools.values():
            for key, value in pool.status_counts.items():
                counts[key] = counts.get(key, 0) + value
        return counts

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()

    def __enter__(self) -> VerifierRouter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
