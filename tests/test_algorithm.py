"""The RLVR maths: group advantages, GAE (general and the γ=λ=1 reduction), and the PPO loss aggregation."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.algorithm import (
    entropy_from_logits,
    gae,
    group_advantages,
    k3_kl,
    logprob_mismatch,
    loss_metrics,
    outcome_token_rewards,
    ppo_loss,
    tis_weights,
)


def test_group_advantages_use_each_groups_own_mean() -> None:
    rewards = torch.tensor([1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0])
    advantages = group_advantages(rewards, group_size=4)
    assert torch.allclose(advantages, torch.tensor([1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0]))
    scaled = group_advantages(rewards, group_size=4, scale="std")
    std = torch.tensor([1.0, -1.0, -1.0, -1.0]).std(unbiased=False)
    assert torch.allclose(scaled[:4], advantages[:4] / (std + 1e-6))
    assert torch.equal(scaled[4:], torch.zeros(4))  # a solved group gives no signal, and no NaN
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, group_size=3)
    with pytest.raises(ValueError, match="'none' or 'std'"):
        group_advantages(rewards, group_size=4, scale="batch")  # type: ignore[arg-type]


def test_gae_matches_a_hand_computed_case() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    gamma, lam = 0.9, 0.8
    # δ2 = 1 − 0.7 = 0.3; δ1 = 0.9·0.7 − 0.6 = 0.03; δ0 = 0.9·0.6 − 0.5 = 0.04
    a2 = 0.3
    a1 = 0.03 + gamma * lam * a2
    a0 = 0.04 + gamma * lam * a1
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    assert torch.allclose(advantages, torch.tensor([[a0, a1, a2, 0.0]]))
    assert torch.allclose(returns, torch.tensor([[a0 + 0.5, a1 + 0.6, a2 + 0.7, 0.0]]))


def test_gae_with_unit_gamma_lambda_and_group_baseline_is_the_group_advantage_on_every_token() -> None:
    torch.manual_seed(0)
    group_size, prompts, length = 4, 3, 7
    rewards = torch.randint(0, 2, (group_size * prompts,)).float() * 2 - 1
    lengths = torch.randint(1, length + 1, (group_size * prompts,))
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    baseline = rewards.view(prompts, group_size).mean(dim=1).repeat_interleave(group_size)
    values = baseline[:, None] * mask  # the group mean as the value of every response token
    advantages, _ = gae(outcome_token_rewards(rewards, mask), values, mask, gamma=1.0, lam=1.0)
    expected = group_advantages(rewards, group_size)[:, None] * mask
    assert torch.allclose(advantages, expected, atol=1e-6)


def _batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    batch, length = 8, 6
    logits = torch.randn(batch, length, generator=generator)
    old_logp = torch.log_softmax(torch.randn(batch, length, generator=generator), dim=-1)
    advantages = torch.randn(batch, generator=generator)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    return logits, old_logp, advantages, mask


def _gradient(logits: torch.Tensor, old_logp, advantages, mask, splits: int, ranks: int = 1) -> torch.Tensor:
    """Gradient of the step's loss, summed over `ranks` × `splits` micro-batches, each normalised globally."""
    weights = logits.clone().requires_grad_(True)
    total_tokens = mask.sum()
    for rank_rows in torch.arange(logits.shape[0]).chunk(ranks):
        for rows in rank_rows.chunk(splits):
            logp = torch.log_softmax(weights[rows] * 1.5, dim=-1)
            loss, _ = ppo_loss(logp, old_logp[rows], advantages[rows], mask[rows], num_tokens=total_tokens)
            loss.backward()  # gradients accumulate, as they do across micro-batches and in the DP all-reduce
    return weights.grad


def test_ppo_loss_gradient_is_independent_of_micro_batching_and_ranks() -> None:
    logits, old_logp, advantages, mask = _batch()
    reference = _gradient(logits, old_logp, advantages, mask, splits=1)
    assert reference.abs().sum() > 0
    for splits, ranks in ((2, 1), (4, 1), (1, 2), (2, 2)):
        assert torch.allclose(
            _gradient(logits, old_logp, advantages, mask, splits, ranks), reference, atol=1e-7
        )


def test_ppo_loss_clips_and_reports() -> None:
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 1.5]]))
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4)
    loss, sums = ppo_loss(logp, old, advantages, mask, clip_low=0.2, clip_high=0.2)
    # per token min(ρA, clip(ρ)A): 1.2 (clipped high), -0.8 (clipped low), 1.1, -1.5
    assert torch.isclose(loss, -torch.tensor((1.2 - 0.8 + 1.1 - 1.5) / 4))
    metrics = loss_metrics(sums)
    assert metrics["clip_high"] == 0.25 and metrics["clip_low"] == 0.25
    assert metrics["approx_kl"] > 0
    unchanged, sums = ppo_loss(old, old, advantages, mask)
    assert loss_metrics(sums)["approx_kl"] == 0.0 and torch.isclose(unchanged, torch.tensor(0.0))


def test_k3_kl_and_entropy() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    assert k3_kl(logp, logp, torch.ones(1, 2)) == 0
    assert k3_kl(logp, logp - 0.1, torch.ones(1, 2)) > 0
    uniform = torch.zeros(2, 3, 8)
    assert torch.allclose(
        entropy_from_logits(uniform), torch.full((2, 3), torch.log(torch.tensor(8.0)).item())
    )


def test_truncated_importance_weights_scale_each_tokens_loss() -> None:
    old = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))  # the learner's logprobs of the sampled tokens
    behaviour = torch.log(torch.tensor([[0.25, 0.4, 0.9]]))  # the engine's
    w = tis_weights(old, behaviour, cap=1.5)
    assert torch.allclose(w, torch.tensor([[1.5, 0.5, 1.0]]))  # 2.0 capped at 1.5
    logp = old + torch.tensor([[0.1, -0.1, 0.05]])
    advantages, mask = torch.tensor([1.0]), torch.ones(1, 3)
    plain, _ = ppo_loss(logp, old, advantages, mask)
    assert torch.equal(ppo_loss(logp, old, advantages, mask, is_weights=torch.ones(1, 3))[0], plain)
    weighted, _ = ppo_loss(logp, old, advantages, mask, is_weights=w)
    ratio = torch.exp(logp - old).clamp(0.8, 1.2)
    assert torch.isclose(weighted, -(w * ratio).sum() / 3)


def test_logprob_mismatch_reports_mean_max_and_k3_kl() -> None:
    learner = torch.tensor([[-1.0, -2.0, 0.0]])
    engine = torch.tensor([[-1.1, -2.0, -5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third is padding: ignored
    m = logprob_mismatch(learner, engine, mask)
    assert m["parity_max_abs"] == pytest.approx(0.1) and m["parity_mean_abs"] == pytest.approx(0.05)
    assert m["parity_kl"] == pytest.approx((math.exp(0.1) - 1.1) / 2, rel=1e-5)  # Δ = 0.1 and 0
    assert logprob_mismatch(learner, learner, mask)["parity_kl"] == 0.0
