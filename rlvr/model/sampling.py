"""The sampling distribution the rollout engines draw from, for the learner to score the same one.

    π_T,p(v) ∝ exp(z_v / T) on the nucleus N_p, 0 elsewhere,

where N_p keeps the most probable tokens whose probabilities (at temperature T) reach p: sorted ascending,
a token is dropped while the cumulative mass up to and including it is ≤ 1 − p, and the top token always
stays. This is vLLM's rule (its sampler's top-k/top-p step), so with `processed_logprobs` vLLM's behaviour
log-probs are log π_T,p of the sampled tokens, and PPO's ratio compares like with like.
"""

from __future__ import annotations

from torch import Tensor


def processed_logits(logits: Tensor, temperature: float = 1.0, top_p: float = 1.0) -> Tensor:
    """(..., V) logits → logits of π_T,p: divided by T, −inf outside the nucleus. fp32."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if not 0 < top_p <= 1:
        raise ValueError("top_p must be in (0, 1]")
    scaled = logits.float() / temperature
    if top_p >= 1.0:
        return scaled
    sorted_logits, order = scaled.sort(dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= 1.0 - top_p
    drop[..., -1] = False
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return sorted_logits.scatter(-1, order, sorted_logits)


def sampled_logprobs(
    logits_BTV: Tensor, targets_BT: Tensor, temperature: float = 1.0, top_p: float = 1.0
) -> Tensor:
    """log π_T,p(target) per position, fp32, (B, T). −inf where the target is outside the nucleus.

    With top_p = 1 this is the target's scaled logit minus logsumexp, without a (B, T, V) log-softmax."""
    logits = processed_logits(logits_BTV, temperature, top_p)
    return logits.gather(-1, targets_BT.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def token_logprobs(logits_BTV: Tensor, targets_BT: Tensor) -> Tensor:
    """log p(target) per position in fp32: the target's logit minus logsumexp (no (B, T, V) log-softmax)."""
    logits = logits_BTV.float()
    return logits.gather(-1, targets_BT.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
