"""The RLVR maths: group advantages, GAE (general and the γ=λ=1 reduction), and the PPO loss aggregation."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.algorithm import (
    ADVANTAGES,
    entropy_from_logits,
    gae,
    group_advantages,
    k3_kl,
    kl_penalty,
    leave_one_out_advantages,
    logprob_mismatch,
    loss_metrics,
    outcome_token_rewards,
    ppo_loss,
    register_advantage,
    tis_weights,
)

CLIP = {"clip_low": 0.2, "clip_high": 0.2}  # the recipe's defaults (rlvr.config.AlgorithmConfig)


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
            loss, _ = ppo_loss(
                logp, old_logp[rows], advantages[rows], mask[rows], **CLIP, num_tokens=total_tokens
            )
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
    unchanged, sums = ppo_loss(old, old, advantages, mask, **CLIP)
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
    plain, _ = ppo_loss(logp, old, advantages, mask, **CLIP)
    assert torch.equal(ppo_loss(logp, old, advantages, mask, **CLIP, is_weights=torch.ones(1, 3))[0], plain)
    weighted, _ = ppo_loss(logp, old, advantages, mask, **CLIP, is_weights=w)
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


def test_a_group_whose_rewards_agree_gets_exactly_zero_advantage() -> None:
    rewards = torch.tensor([0.1] * 8 + [1.0, -1.0, 1.0, 1.0, 0.3, 0.3, 0.3, 0.3])
    for scale in ("none", "std"):
        grpo = group_advantages(rewards, group_size=4, scale=scale)
        assert torch.equal(grpo[:8], torch.zeros(8)) and torch.equal(grpo[12:], torch.zeros(4)), scale
        assert grpo[8:12].abs().sum() > 0
        rloo = leave_one_out_advantages(rewards, group_size=4, scale=scale)
        assert torch.equal(rloo[:8], torch.zeros(8)), scale


def test_rloo_uses_the_other_samples_mean_and_is_registered_beside_grpo() -> None:
    rewards = torch.tensor([1.0, -1.0, -1.0, -1.0])
    assert torch.allclose(leave_one_out_advantages(rewards, 4), torch.tensor([2.0, -2 / 3, -2 / 3, -2 / 3]))
    assert {"grpo", "rloo"} <= set(ADVANTAGES)
    mask = torch.ones(4, 3)
    tokens, metrics = ADVANTAGES["rloo"](rewards, mask, group_size=4, gamma=1.0, lam=1.0, scale="none")
    assert torch.allclose(tokens, leave_one_out_advantages(rewards, 4)[:, None].expand(4, 3))
    assert metrics["advantage_sum"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="registered already"):
        register_advantage("grpo")(lambda *a, **k: None)
    with pytest.raises(ValueError, match="must be finite"):
        group_advantages(torch.tensor([1.0, float("nan")]), 2)


def test_gamma_and_lambda_reach_the_token_advantages() -> None:
    rewards = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    unit, _ = ADVANTAGES["grpo"](rewards, mask, group_size=2, gamma=1.0, lam=1.0, scale="none")
    assert torch.equal(unit, torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]]))
    discounted, _ = ADVANTAGES["grpo"](rewards, mask, group_size=2, gamma=0.5, lam=1.0, scale="none")
    # baseline 0 (group mean): A_t = γ^(T-1-t)·r on the way back from the last token
    assert torch.allclose(discounted, torch.tensor([[0.25, 0.5, 1.0], [-0.5, -1.0, 0.0]]))


def test_padding_holding_nan_or_inf_cannot_reach_the_loss_or_its_gradient() -> None:
    logp = torch.tensor([[-1.0, -2.0, float("nan")], [-0.5, float("-inf"), float("nan")]], requires_grad=True)
    old = torch.tensor([[-1.1, -2.0, float("nan")], [-0.5, float("inf"), 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    advantages = torch.tensor([[1.0, 1.0, float("nan")], [-1.0, float("nan"), 2.0]])
    weights = torch.where(mask.bool(), 1.0, float("nan"))
    loss, sums = ppo_loss(logp, old, advantages, mask, **CLIP, is_weights=weights)
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in sums.values())
    loss.backward()
    assert torch.isfinite(logp.grad).all() and logp.grad[0, 2] == 0 and logp.grad[1, 1] == 0
    kl, total = kl_penalty(logp, old, mask, "k3")
    assert torch.isfinite(kl) and torch.isfinite(total)
    assert logprob_mismatch(logp.detach(), old, mask)["parity_max_abs"] == pytest.approx(0.1)


def test_kl_penalty_estimators() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    mask = torch.ones(1, 2)
    k1, _ = kl_penalty(logp, ref, mask, "k1")
    k3, _ = kl_penalty(logp, ref, mask, "k3")
    assert k1 == pytest.approx(math.log(2) / 2) and k3 == pytest.approx((0.5 - math.log(0.5) - 1) / 2)
    assert kl_penalty(logp, logp, mask, "k3")[0] == 0
