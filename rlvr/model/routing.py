"""Megrez2's router: sigmoid scores, DeepSeek-V3 "noaux_tc" top-k selection, and routing replay.

`route_tokens` is shared by the native `Gate` and the vLLM model class (`rollout/vllm_megrez2.py`), so both
engines pick experts with the same code. Routing replay (Rollout Routing Replay, R3) hands the router the
experts another forward chose (the rollout engine's); an entry of -1 in those indices means "no recorded
choice here, pick as usual" (padding, or the last sampled token, which the engine never fed back).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlvr.model.config import Megrez2Config

Route = tuple[Tensor, Tensor]  # (weights_TK fp32 mixing weights, indices_TK int64 expert ids)


def select_experts(biased_TE: Tensor, top_k: int, n_group: int = 1, topk_group: int = 1) -> Tensor:
    """(T, K) int64: the top-k experts of biased scores, within the `topk_group` best of `n_group` groups
    (DeepSeek-V3 grouped top-k: groups ranked by the sum of their best two scores)."""
    if n_group > 1:
        T, E = biased_TE.shape
        grouped = biased_TE.view(T, n_group, E // n_group)
        group_score_TG = grouped.topk(min(2, E // n_group), dim=-1).values.sum(-1)
        keep_TG = group_score_TG.topk(topk_group, dim=-1).indices
        drop_TG = torch.ones_like(group_score_TG, dtype=torch.bool).scatter_(1, keep_TG, False)
        biased_TE = grouped.masked_fill(drop_TG[..., None], float("-inf")).view(T, E)
    return biased_TE.topk(top_k, dim=-1).indices


def route_tokens(
    x_TD: Tensor,
    weight_ED: Tensor,
    bias_E: Tensor,
    top_k: int,
    n_group: int = 1,
    topk_group: int = 1,
    norm_topk_prob: bool = True,
    scale: float = 1.0,
    fixed_indices_TK: Tensor | None = None,
) -> Route:
    """Sigmoid routing with selection-only correction bias (DeepSeek-V3 "noaux_tc"), in fp32:

        s = sigmoid(x W^T);  idx = topk(s + b, k) [within the topk_group best groups];
        w = s[idx] / sum s[idx] (if norm_topk_prob), times scale.

    `fixed_indices_TK` (routing replay) replaces the top-k choice of every token whose row holds expert ids;
    rows of -1 keep their own choice. The weights always come from the scores."""
    with torch.autocast(x_TD.device.type, enabled=False):
        scores_TE = torch.sigmoid(F.linear(x_TD.float(), weight_ED.float()))
    if fixed_indices_TK is None:
        indices_TK = select_experts(scores_TE.detach() + bias_E.float(), top_k, n_group, topk_group)
    else:
        fixed_TK = fixed_indices_TK.to(device=scores_TE.device, dtype=torch.int64)
        own_TK = select_experts(scores_TE.detach() + bias_E.float(), top_k, n_group, topk_group)
        indices_TK = torch.where(fixed_TK[:, :1] >= 0, fixed_TK, own_TK)
    weights_TK = scores_TE.gather(1, indices_TK)
    if norm_topk_prob:
        weights_TK = weights_TK / (weights_TK.sum(-1, keepdim=True) + 1e-20)
    return weights_TK * scale, indices_TK


class Gate(nn.Module):
    """Router of one MoE layer: sigmoid scores -> (mixing weights, expert indices), DeepSeek-V3 "noaux_tc".

    The correction bias only *picks* the experts (it is the aux-loss-free balancing knob); the mixing weights
    are the un-biased sigmoid scores of the picked experts, renormalised over the k and scaled. All in fp32:
    near-ties between experts are common and bf16 would flip them.
    """

    def __init__(self, config: Megrez2Config):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.n_group, self.topk_group = config.n_group, config.topk_group
        self.norm_topk_prob, self.scale = config.norm_topk_prob, config.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(config.n_routed_experts, config.hidden_size))
        self.register_buffer("e_score_correction_bias", torch.zeros(config.n_routed_experts))

    def forward(self, x_TD: Tensor, fixed_indices_TK: Tensor | None = None) -> Route:
        """`fixed_indices_TK` (routing replay) overrides the top-k choice; weights still come from scores."""
        return route_tokens(
            x_TD,
            self.weight,
            self.e_score_correction_bias,
            self.top_k,
            self.n_group,
            self.topk_group,
            self.norm_topk_prob,
            self.scale,
            fixed_indices_TK,
        )

    @torch.no_grad()
    def choose(self, x_TD: Tensor) -> Tensor:
        """(T, K): the experts this router picks on its own, whatever a replay imposes (the routing mismatch
        metric compares them with the engine's)."""
        with torch.autocast(x_TD.device.type, enabled=False):
            scores_TE = torch.sigmoid(F.linear(x_TD.float(), self.weight.float()))
        biased_TE = scores_TE + self.e_score_correction_bias.float()
        return select_experts(biased_TE, self.top_k, self.n_group, self.topk_group)

    def _apply(self, fn: Callable, recurse: bool = True) -> Gate:
        # `.to(bfloat16)` on the model must not round the correction bias (DeepSeek-V3 keeps it fp32 too).
        super()._apply(fn, recurse)
        self.e_score_correction_bias = self.e_score_correction_bias.float()
        return self
