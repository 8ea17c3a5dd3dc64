"""Rollout Routing Replay (R3; Ma et al. 2025, arXiv 2510.11370), the learner's side.

An MoE's learner and rollout engine compute the same function with different kernels, so a token near a tie
between two experts can be routed differently by the two: the policy the learner scores and updates is then
not the one that sampled. With `algorithm.routing_replay: rollout` the learner runs every forward of the
policy with the experts the engine chose (`Rollout.routing`, captured by the engine; the mixing weights still
come from the learner's routers, so the router keeps its gradient). Whenever the engine captured routing
(`rollout.capture_routing`, or replay on), the step reports `routing_mismatch`: the fraction of (response
token, MoE layer) pairs where the learner's router, on the states of its own forward, picks a different set
of experts than the engine did (`routing_mismatch_prompt`: the same over prompt tokens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from rlvr.config import RecipeConfig
    from rlvr.model.config import Megrez2Config
    from rollout.types import Rollout


def captures_routing(recipe: RecipeConfig) -> bool:
    """Whether the rollout engines return routing: for replay, or for the mismatch metric alone."""
    replay, capture = recipe.algorithm.routing_replay == "rollout", recipe.rollout.capture_routing
    return replay or capture


def check_routing_replay(recipe: RecipeConfig, model: Megrez2Config) -> None:
    """Refuses routing capture (and so replay) for a model with no MoE layer."""
    if captures_routing(recipe) and not model.moe_layer_ids:
        replay = recipe.algorithm.routing_replay == "rollout"
        key = "algorithm.routing_replay=rollout" if replay else "rollout.capture_routing=true"
        raise ValueError(
            f"{key}: the model has no MoE layer "
            f"(first_k_dense_replace={model.first_k_dense_replace} of {model.num_hidden_layers} layers), so "
            "there is no routing to capture or replay"
        )


def pack_routing(rollouts: list[Rollout], length: int) -> Tensor | None:
    """(B, length, L, K) int16: rollout i's experts at the positions of its prompt + response (the engine's
    `Rollout.routing`), -1 where there are none (the last token, padding). None if no rollout has routing."""
    have = [r.routing is not None for r in rollouts]
    if not any(have):
        return None
    if not all(have):
        raise ValueError("some rollouts carry routing and some do not: one engine setting serves a run")
    _, L, K = rollouts[0].routing.shape
    packed = torch.full((len(rollouts), length, L, K), -1, dtype=torch.int16)
    for i, r in enumerate(rollouts):
        expected = len(r.prompt_ids) + len(r.response_ids) - 1
        if r.routing.shape != (expected, L, K):
            raise ValueError(f"rollout {i}: routing {tuple(r.routing.shape)}, expected {(expected, L, K)}")
        packed[i, :expected] = r.routing.to(torch.int16)
    return packed


def replay_indices(routing_BTLK: Tensor) -> Tensor:
    """The model's `replay_indices` (L, B, T, K) int64 from a batch's packed routing."""
    return routing_BTLK.permute(2, 0, 1, 3).long()


@torch.no_grad()
def mismatch_counts(
    choice_LBTK: Tensor, routing_BTLK: Tensor, response_mask: Tensor, attention_mask: Tensor
) -> Tensor:
    """[response pairs that differ, response pairs, prompt pairs that differ, prompt pairs] over (token, MoE
    layer) pairs with engine routing: a pair differs when the learner router's top-k *set* is not the
    engine's. `response_mask` (B, T-1) marks predicted response tokens, so input position t is a response
    token where response_mask[t-1] is set."""
    engine_BTLK = routing_BTLK.to(choice_LBTK.device).long()
    own_BTLK = choice_LBTK.permute(1, 2, 0, 3)
    differs_BTL = (own_BTLK.sort(-1).values != engine_BTLK.sort(-1).values).any(-1)
    captured_BT = engine_BTLK[..., 0, 0] >= 0
    response_BT = torch.zeros_like(captured_BT)
    response_BT[:, 1:] = response_mask.bool()
    response_BT &= captured_BT
    prompt_BT = captured_BT & ~response_BT & attention_mask.bool()
    layers = differs_BTL.shape[-1]
    counts = [
        differs_BTL[response_BT].sum(),
        response_BT.sum() * layers,
        differs_BTL[prompt_BT].sum(),
        prompt_BT.sum() * layers,
    ]
    return torch.stack(counts).float()


def routing_metrics(counts: Tensor) -> dict[str, float]:
    """`routing_mismatch` (response tokens) and `routing_mismatch_prompt` from summed `mismatch_counts`."""
    return {
        "routing_mismatch": float(counts[0] / counts[1].clamp_min(1.0)),
        "routing_mismatch_prompt": float(counts[2] / counts[3].clamp_min(1.0)),
    }
