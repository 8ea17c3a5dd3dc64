"""The sampling distribution the rollout engines draw from, for the learner to score the same one.

    π_T,p(v) ∝ exp(z_v / T) on the nucleus N_p, 0 elsewhere,

where N_p keeps the most probable tokens whose probabilities (at temperature T) reach p: sorted ascending,
a token is dropped while the cumulative mass up to and including it is ≤ 1 − p, and the top token always
stays. This is vLLM's rule (its sampler's top-k/top-p step), so with `processed_logprobs` vLLM's behaviour
log-probs are log π_T,p of the sampled tokens, and PPO's ratio compares like with like.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def processed_logits(logits: Tensor, temperature: float = 1.0, top_p: float = 1.0) -> Tensor:
    """(..., V) logits → logits of π_T,p: divided by T, −inf outside the nucleus. fp32."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if not 0 < top_p <= 1:
        raise ValueError("top_p must be in (0, 1]")
    scaled = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # fp64 stays fp64
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
    """log π_T,p(target) per position, fp32 (fp64 for fp64 logits), (B, T). −inf where the target is
    outside the nucleus.

    With top_p = 1 this is the target's scaled logit minus logsumexp, without a (B, T, V) log-softmax."""
    logits = processed_logits(logits_BTV, temperature, top_p)
    return logits.gather(-1, targets_BT.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def token_logprobs(logits_BTV: Tensor, targets_BT: Tensor) -> Tensor:
    """log p(target) per position in fp32: the target's logit minus logsumexp (no (B, T, V) log-softmax)."""
    logits = logits_BTV.float()
    return logits.gather(-1, targets_BT.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


LOGPROB_CHUNK = 512  # tokens whose logits exist at once in `linear_logprobs`


def linear_logprobs(
    hidden_ND: Tensor,
    weight_VD: Tensor,
    targets_N: Tensor,
    temperature: float = 1.0,
    top_p: float = 1.0,
    chunk_size: int = LOGPROB_CHUNK,
) -> tuple[Tensor, Tensor]:
    """log π_T,p(target) and the entropy H(π_T,p) per token from the final hidden states, (N,) fp32 each.

    The logits z = h·Wᵀ exist `chunk_size` tokens at a time and are never kept: the backward recomputes a
    chunk's logits and applies ∂ log π(y)/∂z_v = (1[v = y] − π_v)/T on the nucleus (0 outside it, which is
    treated as fixed, as autograd through `processed_logits` does), so memory is O(chunk × V) instead of
    O(N × V) for the logits and each full-size copy of them. Equal to `sampled_logprobs` of h·Wᵀ and to
    the entropy of its softmax, forward and gradient, to fp32 round-off. Under autocast the matmuls run in
    the autocast dtype (as the LM head would) and everything after them in fp32. The entropy carries no
    gradient (a diagnostic). −inf log π where the target is outside the nucleus.

    hidden_ND (N, D), weight_VD (V, D) (the LM head), targets_N (N,) int64. Raises ValueError on a bad
    temperature or top_p."""
    processed_logits(hidden_ND.new_zeros(1, 1), temperature, top_p)  # validates T and top_p
    return _LinearLogprobs.apply(hidden_ND, weight_VD, targets_N, temperature, top_p, chunk_size)


def _matmul_dtype(x: Tensor) -> torch.dtype:
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class _LinearLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, h: Tensor, w: Tensor, targets: Tensor, temperature: float, top_p: float, chunk: int
    ) -> tuple[Tensor, Tensor]:
        dtype = _matmul_dtype(h)
        out = torch.promote_types(dtype, torch.float32)  # fp32, or fp64 for fp64 inputs
        logp = torch.empty(len(h), dtype=out, device=h.device)
        entropy = torch.empty_like(logp)
        with torch.autocast(h.device.type, enabled=False), torch.no_grad():
            w_c = w.to(dtype)
            for a in range(0, len(h), chunk):
                z = processed_logits((h[a : a + chunk].to(dtype) @ w_c.T).to(out), temperature, top_p)
                lse = z.logsumexp(-1)
                logp[a : a + chunk] = z.gather(-1, targets[a : a + chunk, None]).squeeze(-1) - lse
                p = (z - lse[:, None]).exp()
                entropy[a : a + chunk] = lse - torch.where(p > 0, p * z, 0.0).sum(-1)  # −Σ p log p
        ctx.save_for_backward(h, w, targets)
        ctx.settings = (temperature, top_p, chunk, dtype, out)
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx: Any, grad_logp: Tensor, _grad_entropy: Tensor) -> tuple[Tensor | None, ...]:
        h, w, targets = ctx.saved_tensors
        temperature, top_p, chunk, dtype, out = ctx.settings
        grad_h = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros(w.shape, dtype=out, device=w.device) if ctx.needs_input_grad[1] else None
        with torch.autocast(h.device.type, enabled=False):
            w_c = w.to(dtype)
            for a in range(0, len(h), chunk):
                h_c = h[a : a + chunk].to(dtype)
                z = processed_logits((h_c @ w_c.T).to(out), temperature, top_p)
                p = z.softmax(-1)  # 0 outside the nucleus
                dz = -p
                dz.scatter_add_(-1, targets[a : a + chunk, None], torch.ones_like(p[:, :1]))
                dz = torch.where(torch.isfinite(z), dz, 0.0) * (grad_logp[a : a + chunk, None] / temperature)
                if grad_h is not None:
                    grad_h[a : a + chunk] = (dz.to(dtype) @ w_c).to(h.dtype)
                if grad_w is not None:
                    grad_w += (dz.T.to(dtype) @ h_c).to(out)
        return grad_h, None if grad_w is None else grad_w.to(w.dtype), None, None, None, None
