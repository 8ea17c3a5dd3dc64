"""The RLVR maths: group-baseline advantages, GAE, the PPO clipped loss and its diagnostics.

Pure tensor functions, no state. Shapes: B sequences, T response tokens; `mask` is 1 on response tokens
that count (not padding). The recipe's setting (GAE with γ = λ = 1 and the group mean as the value) makes
every token of a response carry its sequence's group advantage; `gae` stays general so tests can prove it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

AdvantageScale = Literal["none", "std"]


def group_advantages(
    rewards: Tensor, group_size: int, scale: AdvantageScale = "none", eps: float = 1e-6
) -> Tensor:
    """GRPO's outcome advantage: A_i = r_i − mean(r_group), or (r_i − mean) / (std + eps) with scale="std".

    `rewards` is [B] with the n samples of each prompt contiguous (B = prompts × group_size). The baseline is
    the mean of the sample's own group only; there is no second centring over the whole batch. The std is the
    population std of the group (a group whose samples all agree gets advantage 0, not NaN).
    """
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}")
    groups = rewards.float().view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale == "std":
        centred = centred / (groups.std(dim=1, unbiased=False, keepdim=True) + eps)
    elif scale != "none":
        raise ValueError(f"advantage scale {scale!r}: expected 'none' or 'std'")
    return centred.view(-1)


def gae(
    token_rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over each response, right to left:

        δ_t = r_t + γ·V_{t+1} − V_t,    A_t = δ_t + γ·λ·A_{t+1},    returns R_t = A_t + V_t,

    with V and A zero past the last unmasked token. Inputs and outputs are [B, T]; masked positions get 0.
    """
    rewards, values, mask = token_rewards.float(), values.float(), mask.float()
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    next_advantage = torch.zeros_like(next_value)
    for t in range(rewards.shape[1] - 1, -1, -1):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = advantage * mask[:, t]
        # padding between tokens (never in practice, but cheap to honour) passes the future through unchanged
        next_value = torch.where(mask[:, t] > 0, values[:, t], next_value)
        next_advantage = torch.where(mask[:, t] > 0, advantage, next_advantage)
    return advantages, (advantages + values) * mask


def outcome_token_rewards(rewards: Tensor, mask: Tensor) -> Tensor:
    """Places each sequence's scalar reward on its last response token ([B] → [B, T]); zero elsewhere."""
    last = mask.float().cumsum(dim=1).argmax(dim=1)
    token_rewards = torch.zeros_like(mask, dtype=torch.float32)
    token_rewards[torch.arange(mask.shape[0]), last] = rewards.float()
    return token_rewards * mask


def ppo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    num_tokens: float | Tensor | None = None,
    is_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate as a token mean over the global batch:

        ρ_t = exp(logp_t − old_logp_t),
        L = Σ_t mask_t · w_t · −min(ρ_t·A_t, clip(ρ_t, 1 − clip_low, 1 + clip_high)·A_t) / N,

    where N (`num_tokens`) is the number of response tokens in the whole optimiser step, summed over
    micro-batches and data-parallel ranks; None means this batch is the whole step. Summing the losses of
    micro-batches (and all-reducing gradients across ranks) then gives exactly the full-batch gradient.
    `advantages` is [B, T] or [B] (broadcast over tokens). Returns the loss and detached token sums of
    the diagnostics (divide by N to get means; see `loss_metrics`). `is_weights` w_t (default 1) re-weights
    tokens that were sampled by another policy than the old one; see `tis_weights`.
    """
    mask = mask.to(logp.dtype)
    if advantages.ndim == 1:
        advantages = advantages[:, None]
    advantages = advantages.to(logp.dtype)
    total = mask.sum() if num_tokens is None else num_tokens
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages
    token_loss = -torch.minimum(unclipped, clipped)
    if is_weights is not None:
        token_loss = token_loss * is_weights.detach().to(logp.dtype)
    loss = (token_loss * mask).sum() / total
    with torch.no_grad():
        sums = {
            "clip_low": ((ratio < 1.0 - clip_low) & (advantages < 0)).to(mask.dtype).mul(mask).sum(),
            "clip_high": ((ratio > 1.0 + clip_high) & (advantages > 0)).to(mask.dtype).mul(mask).sum(),
            # k3 estimator of KL(old || new): E_old[ρ − 1 − log ρ] ≥ 0
            "approx_kl": ((ratio - 1.0) - log_ratio).mul(mask).sum(),
            "tokens": mask.sum(),
        }
    return loss, sums


def tis_weights(old_logp: Tensor, behaviour_logp: Tensor, cap: float) -> Tensor:
    """Truncated importance sampling for the engine/learner mismatch:

        w_t = min(exp(old_logp_t − behaviour_logp_t), cap),

    where old_logp is the learner's (recomputed) logprob and behaviour_logp the rollout engine's, of the
    sampled token. Tokens the engine over-sampled relative to the learner (w < 1) count less; the cap bounds
    the variance of the rare tokens the engine under-sampled."""
    return torch.exp(old_logp - behaviour_logp).clamp(max=cap).detach()


def logprob_mismatch(learner_logp: Tensor, engine_logp: Tensor, mask: Tensor) -> dict[str, float]:
    """How far the rollout engine's logprobs are from the learner's, on tokens the engine sampled:

    mean |Δ|, max |Δ| with Δ_t = learner_logp_t − engine_logp_t, and the mismatch KL(π_engine || π_learner)
    by the k3 estimator  Σ mask·(e^{Δ} − Δ − 1) / Σ mask.
    """
    m = mask.bool()
    diff = (learner_logp - engine_logp).double()[m]
    if diff.numel() == 0:
        return {"parity_mean_abs": 0.0, "parity_max_abs": 0.0, "parity_kl": 0.0}
    return {
        "parity_mean_abs": float(diff.abs().mean()),
        "parity_max_abs": float(diff.abs().max()),
        "parity_kl": float((diff.exp() - diff - 1.0).mean()),
    }


def k3_kl(logp: Tensor, ref_logp: Tensor, mask: Tensor, num_tokens: float | Tensor | None = None) -> Tensor:
    """The k3 estimator of KL(π || π_ref) as a token mean: Σ mask·(e^{ref−logp} − (ref − logp) − 1) / N.

    Off by default (`algorithm.kl_coef: 0`); the recipe's GRPO variant has no KL term.
    """
    mask = mask.to(logp.dtype)
    diff = ref_logp - logp
    total = mask.sum() if num_tokens is None else num_tokens
    return ((torch.exp(diff) - diff - 1.0) * mask).sum() / total


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Per-token entropy H = −Σ_v p_v log p_v of the softmax over the last dimension."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def loss_metrics(sums: dict[str, Tensor]) -> dict[str, float]:
    """Token sums from `ppo_loss` (accumulated over micro-batches and ranks) → per-token fractions/means."""
    tokens = max(float(sums["tokens"]), 1.0)
    return {name: float(value) / tokens for name, value in sums.items() if name != "tokens"}
