"""The options and the error of `rlvr model import`, free of torch so that the CLI parser stays fast."""

from __future__ import annotations

from dataclasses import dataclass


class ModelImportError(ValueError):
    """A source that cannot become a Megrez2 checkpoint; the message says what was found and why."""


@dataclass(frozen=True)
class UpcycleOptions:
    """The MoE shape to give a dense model. `first_k_dense_replace` None: the smallest k >= 1 for which the
    remaining layers form whole groups (3 for a 30-layer model). Defaults suit SmolLM2-135M (dense width
    1536): 16 experts of width 256, top-2, so 6 x 256 shared = the dense MLP."""

    first_k_dense_replace: int | None = None
    n_routed_experts: int = 16
    num_experts_per_tok: int = 2
    moe_intermediate_size: int = 256
    experts_shared_frequency: int = 3
    router_std: float = 0.02  # the Llama initializer_range
    seed: int = 0
