"""The RLVR maths: advantage estimators (a registry), GAE, the PPO clipped loss, KL penalties, diagnostics.

Pure tensor functions, no state. Shapes: B sequences, T response tokens; `mask` is 1 on response tokens
that count (not padding). Masked positions are *selected away* (`torch.where`), never multiplied by 0, so a
NaN or −inf in padding cannot reach a loss, a metric or a gradient. The recipe's setting (GAE with
γ = λ = 1 and the group mean as the value) makes every token of a response carry its sequence's group
advantage; `gae` stays general, and `algorithm.gamma`/`algorithm.lam` reach it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

AdvantageScale = Literal["none", "std"]
KLEstimator = Literal["k1", "k3"]
# rewards (B,), response mask (B, T) → advantages (B, T), metrics; keyword settings below
AdvantageFn = Callable[..., tuple[Tensor, dict[str, float]]]
ADVANTAGES: dict[str, AdvantageFn] = {}


def register_advantage(name: str) -> Callable[[AdvantageFn], AdvantageFn]:
    """Adds an estimator to `ADVANTAGES` under `name` (`algorithm.advantage` in a recipe); a name can be
    registered once. Every estimator takes (rewards, mask, *, group_size, gamma, lam, scale)."""

    def add(fn: AdvantageFn) -> AdvantageFn:
        if name in ADVANTAGES:
            raise ValueError(f"advantage estimator {name!r} is registered already")
        ADVANTAGES[name] = fn
        return fn

    return add


def response_mask(lengths: list[int]) -> Tensor:
    """(B, max length) float mask of the first lengths[i] positions of row i (responses, token-aligned)."""
    longest = max(lengths, default=0)
    return (torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]).float()


def _groups(rewards: Tensor, group_size: int) -> Tensor:
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards must be finite (the verifier step turns NaN/inf into status 'error')")
    return rewards.float().view(-1, group_size)


def group_advantages(
    rewards: Tensor, group_size: int, scale: AdvantageScale = "none", eps: float = 1e-6
) -> Tensor:
    """GRPO's outcome advantage: A_i = r_i − mean(r_group), or (r_i − mean) / (std + eps) with scale="std".

    `rewards` is [B] with the n samples of each prompt contiguous (B = prompts × group_size). The baseline is
    the mean of the sample's own group only; there is no second centring over the whole batch. The std is the
    population std of the group. A group whose samples all agree gets advantage exactly 0 (not a rounding
    residue of the mean, and not NaN).
    """
    groups = _groups(rewards, group_size)
    return _scaled(groups, groups - groups.mean(dim=1, keepdim=True), scale, eps).view(-1)


def leave_one_out_advantages(
    rewards: Tensor, group_size: int, scale: AdvantageScale = "none", eps: float = 1e-6
) -> Tensor:
    """RLOO's advantage (Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics"): each sample's baseline is
    the mean of the *other* n − 1 samples of its group, A_i = r_i − (Σ_j r_j − r_i)/(n − 1) = n/(n−1)·(r_i −
    mean). Needs n ≥ 2."""
    if group_size < 2:
        raise ValueError("rloo needs at least 2 samples per prompt (rollout.n >= 2)")
    groups = _groups(rewards, group_size)
    others = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
    return _scaled(groups, groups - others, scale, eps).view(-1)


def _scaled(groups: Tensor, centred: Tensor, scale: AdvantageScale, eps: float) -> Tensor:
    if scale == "std":
        centred = centred / (groups.std(dim=1, unbiased=False, keepdim=True) + eps)
    elif scale != "none":
        raise ValueError(f"advantage scale {scale!r}: expected 'none' or 'std'")
    agree = groups.amax(dim=1, keepdim=True) == groups.amin(dim=1, keepdim=True)
    return torch.where(agree, torch.zeros_like(centred), centred)


def outcome_advantages(
    sequence_advantages: Tensor, rewards: Tensor, mask: Tensor, gamma: float, lam: float
) -> Tensor:
    """Per-token advantages (B, T) of an outcome reward by GAE, with the sequence's baseline b = r − A as the
    value of every response token: δ_t = γ·b − b before the last token, r − b on it. With γ = λ = 1 the sum
    telescopes to A on every token (computed directly: the same numbers without the loop over T)."""
    valid = mask.bool()
    if gamma == 1.0 and lam == 1.0:
        return torch.where(valid, sequence_advantages[:, None].float(), 0.0)
    baseline = (rewards.float() - sequence_advantages.float())[:, None]
    values = torch.where(valid, baseline, 0.0)
    advantages, _ = gae(outcome_token_rewards(rewards, mask), values, mask, gamma, lam)
    return advantages


@register_advantage("grpo")
def grpo(
    rewards: Tensor, mask: Tensor, *, group_size: int, gamma: float, lam: float, scale: AdvantageScale
) -> tuple[Tensor, dict[str, float]]:
    """GRPO (Shao et al. 2024, DeepSeekMath): the group mean as the baseline (`group_advantages`), spread
    over the tokens by GAE(γ, λ) (`outcome_advantages`)."""
    sequence = group_advantages(rewards, group_size, scale)
    return outcome_advantages(sequence, rewards, mask, gamma, lam), _advantage_metrics(sequence)


@register_advantage("rloo")
def rloo(
    rewards: Tensor, mask: Tensor, *, group_size: int, gamma: float, lam: float, scale: AdvantageScale
) -> tuple[Tensor, dict[str, float]]:
    """RLOO: the leave-one-out mean as the baseline (`leave_one_out_advantages`), spread by GAE(γ, λ)."""
    sequence = leave_one_out_advantages(rewards, group_size, scale)
    return outcome_advantages(sequence, rewards, mask, gamma, lam), _advantage_metrics(sequence)


def _advantage_metrics(sequence: Tensor) -> dict[str, float]:
    return {"advantage_abs_mean": float(sequence.abs().mean()), "advantage_sum": float(sequence.sum())}


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
    *,
    clip_low: float,
    clip_high: float,
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
    valid = mask.bool()
    if advantages.ndim == 1:
        advantages = advantages[:, None].expand_as(logp)
    # padding is selected away before any arithmetic: a NaN there would poison exp() and its gradient
    logp = torch.where(valid, logp, 0.0)
    old_logp = torch.where(valid, old_logp.to(logp.dtype), 0.0)
    advantages = torch.where(valid, advantages.to(logp.dtype), 0.0)
    total = valid.sum() if num_tokens is None else num_tokens
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * advantages
    token_loss = -torch.minimum(unclipped, clipped)
    if is_weights is not None:
        token_loss = token_loss * torch.where(valid, is_weights.detach().to(logp.dtype), 0.0)
    loss = token_loss.sum() / total
    with torch.no_grad():
        zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
        sums = {
            "clip_low": ((ratio < 1.0 - clip_low) & (advantages < 0) & valid).sum().to(logp.dtype),
            "clip_high": ((ratio > 1.0 + clip_high) & (advantages > 0) & valid).sum().to(logp.dtype),
            # k3 estimator of KL(old || new): E_old[ρ − 1 − log ρ] ≥ 0
            "approx_kl": torch.where(valid, (ratio - 1.0) - log_ratio, zero).sum(),
            "tokens": valid.sum().to(logp.dtype),
        }
    return loss, sums


def kl_penalty(
    logp: Tensor,
    ref_logp: Tensor,
    mask: Tensor,
    estimator: KLEstimator = "k3",
    num_tokens: float | Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """KL(π || π_ref) to a frozen reference policy as a token mean over the global batch, with Schulman's
    estimators (http://joschu.net/blog/kl-approx.html) of d = log π_ref − log π on tokens sampled from π:

        k1 = −d  (unbiased, high variance, can be negative),    k3 = e^d − d − 1  (unbiased, ≥ 0),

    summed over unmasked tokens and divided by N (`num_tokens`, as in `ppo_loss`). Returns (loss, token sum).
    """
    valid = mask.bool()
    d = torch.where(valid, ref_logp.detach().to(logp.dtype) - logp, 0.0)
    if estimator == "k1":
        per_token = -d
    elif estimator == "k3":
        per_token = torch.exp(d) - d - 1.0
    else:
        raise ValueError(f"KL estimator {estimator!r}: expected 'k1' or 'k3'")
    total = valid.sum() if num_tokens is None else num_tokens
    summed = per_token.sum()
    return summed / total, summed.detach()


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
    m = mask.bool() & torch.isfinite(learner_logp) & torch.isfinite(engine_logp)
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
    return kl_penalty(logp, ref_logp, mask, "k3", num_tokens)[0]


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Per-token entropy H = −Σ_v p_v log p_v of the softmax over the last dimension (of the logits given:
    the learner passes the processed logits of `rlvr.model.sampling`, the distribution it samples from)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -torch.where(torch.isfinite(logp), logp.exp() * logp, 0.0).sum(dim=-1)  # 0·log 0 = 0


def loss_metrics(sums: dict[str, Tensor]) -> dict[str, float]:
    """Token sums from `ppo_loss` (accumulated over micro-batches and ranks) → per-token fractions/means."""
    tokens = max(float(sums["tokens"]), 1.0)
    return {name: float(value) / tokens for name, value in sums.items() if name != "tokens"}


def sft_loss(logp: Tensor, weight: Tensor, normaliser: float | Tensor) -> Tensor:
    """Supervised loss Σ_t w_t · (−log p_t) / normaliser over this micro-batch's target tokens.

    logp and weight: (N,) the log-probs of the target tokens and their weights; normaliser: Σ w over the whole
    step (every micro-batch and rank), so micro-batch losses add up to the step's loss. With w_t = 1 this is
    the token mean; with w_t = 1 / |turn(t)| it is the Megrez2 report's turn-level loss (§4.2.1): each
    turn's token mean, then the mean over the step's turns, L = (1/N_turns) Σ_j (1/|j|) Σ_{t∈j} −log p_t."""
    return -(weight * logp).sum() / normaliser
