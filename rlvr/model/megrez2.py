"""Megrez2 ("megrez_moe", Megrez2-3x7B-A3B) in plain PyTorch: the MoE language model rlvr's learner trains.

What makes Megrez2 different from a DeepSeek-V3-style MoE:
* Cross-layer expert sharing. After the dense layer(s), MoE layers come in groups of 3
  (`experts_shared_frequency`) that use ONE bank of routed experts, stored at the group's first ("leader")
  layer: {1,2,3} -> 1, {4,5,6} -> 4, and so on. Router, correction bias, shared experts, norms and attention
  stay per layer.
* Pre-gated routing (tech report section 3.3). Layer i's router, with its own weights, reads layer i-1's FFN
  input, so layer i's experts are known while layer i-1 is still running and an engine can prefetch them. The
  experts run on layer i's own FFN input.
The rest is familiar: Llama-style GQA attention (`attention.py`), a dense SwiGLU in layer 0, and in every
later layer 64 routed SwiGLU experts (top-6 of sigmoid scores, DeepSeek-V3 "noaux_tc" selection) plus 4
shared experts fused into one always-on SwiGLU.

File layout: dispatch -> routed experts (kernels in `kernels.py`) -> MoE -> block -> model -> smoke run. The
router (`Gate`, `route_tokens`, routing replay) is in `routing.py`, config and presets in `config.py`,
checkpoint I/O in the official HF layout in `checkpoint.py`.

Shape suffixes: B batch, T tokens (B*T flattened where the name has no B), S token-slots (T*K, sorted by
expert), D hidden, F expert width, E experts, K experts per token, H heads, V vocabulary, L MoE layers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rlvr.model.attention import (
    Attention,
    Context,
    KVCache,
    Packing,
    RMSNorm,
    build_attention_mask,
    rope_cos_sin,
)
from rlvr.model.checkpoint import load_checkpoint, save_pretrained
from rlvr.model.config import PRESET_NAMES, PRESETS, RUNTIME_FIELDS, Megrez2Config, preset_config
from rlvr.model.kernels import FusedRoutedExperts, GatherRows, compute_dtype, expert_ffn, grouped_mm_supported
from rlvr.model.routing import Gate, Route, route_tokens
from rlvr.model.sampling import linear_logprobs, token_logprobs
from rlvr.model.tied import check_tied_load

# ---- MoE


class MLP(nn.Module):
    """SwiGLU, down(silu(gate(x)) * up(x)): the dense layer 0, and the shared experts fused into one of width
    n_shared_experts * moe_intermediate_size (the same function as running them separately and summing)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


@dataclass
class Dispatch:
    """Token-slot permutation of one MoE call. The T*K (token, k) slots are sorted by expert, so each expert's
    tokens form one contiguous block and all experts run as one grouped matmul. Shapes are static (no host
    sync), which keeps the grouped path CUDA-graph and torch.compile friendly."""

    token_S: Tensor  # (S,) token each sorted slot reads, S = T*K
    order_S: Tensor  # (S,) slot t*K + k that sorted position s holds
    unsort_S: Tensor  # (S,) sorted position of slot t*K + k (the inverse of order_S)
    counts_E: Tensor  # (E,) int64 slots per expert

    @classmethod
    def plan(cls, indices_TK: Tensor, num_experts: int) -> Dispatch:
        flat_S = indices_TK.reshape(-1)
        order_S = torch.argsort(flat_S, stable=True)
        slots_S = torch.arange(flat_S.numel(), device=flat_S.device)
        unsort_S = torch.empty_like(order_S).scatter_(0, order_S, slots_S)
        counts_E = torch.zeros(num_experts, dtype=torch.int64, device=flat_S.device)
        counts_E.scatter_add_(0, flat_S, torch.ones_like(flat_S))  # bincount with a fixed length
        return cls(order_S // indices_TK.shape[1], order_S, unsort_S, counts_E)

    def dispatch(self, x_TD: Tensor) -> Tensor:
        K = self.token_S.numel() // x_TD.shape[0]
        return GatherRows.apply(x_TD, self.token_S, self.unsort_S, K)

    def combine(self, y_SD: Tensor, weights_TK: Tensor) -> Tensor:
        """out[t] = sum_k w[t,k] * y[slot(t,k)]: a gather back to token order and a (1,K)@(K,D) per token. No
        atomics, so the result is deterministic (routing replay must reproduce logits bit for bit)."""
        T, K = weights_TK.shape
        y_TKD = GatherRows.apply(y_SD, self.unsort_S, self.order_S, 1).view(T, K, -1)
        return torch.bmm(weights_TK.to(y_TKD.dtype).unsqueeze(1), y_TKD).squeeze(1)


class RoutedExperts(nn.Module):
    """A bank of E SwiGLU experts, stacked so that all of them run behind one matmul seam.

    `w_gate_up_E2FD` (E, 2F, D) holds gate_proj rows [0, F) and up_proj rows [F, 2F): one grouped matmul
    instead of two. `w_down_EDF` is (E, D, F). The official checkpoint stores
    `experts.{j}.{gate,up,down}_proj.weight` per expert; checkpoint.py converts. A group of layers holds this
    one module object, so the bank's gradient is the sum over the group's layers and `parameters()` (which
    de-duplicates) hands it to an optimizer once.
    """

    def __init__(self, num_experts: int, dim: int, hidden: int):
        super().__init__()
        self.num_experts, self.hidden = num_experts, hidden
        self.w_gate_up_E2FD = nn.Parameter(torch.empty(num_experts, 2 * hidden, dim))
        self.w_down_EDF = nn.Parameter(torch.empty(num_experts, dim, hidden))
        self.kernel = "auto"  # "auto", "fused", "grouped_mm" or "loop" (kernels.py; auto: fused on CPU)

    def forward(self, x_TD: Tensor, weights_TK: Tensor, indices_TK: Tensor) -> Tensor:
        """(T, D) tokens, (T, K) routing weights and experts -> (T, D): the weighted sum of their outputs."""
        plan = Dispatch.plan(indices_TK, self.num_experts)
        x_TD = x_TD.to(compute_dtype(x_TD))
        if FusedRoutedExperts.selected(self.kernel, x_TD, self.w_down_EDF, plan.token_S.numel()):
            w_gate_up, w_down = self.w_gate_up_E2FD.to(x_TD.dtype), self.w_down_EDF.to(x_TD.dtype)
            return FusedRoutedExperts.apply(x_TD, weights_TK.to(x_TD.dtype), w_gate_up, w_down, plan)
        x_SD = plan.dispatch(x_TD)
        return plan.combine(self.run_sorted(x_SD, plan.counts_E), weights_TK)

    def run_sorted(self, x_SD: Tensor, counts_E: Tensor) -> Tensor:
        """The experts on (S, D) slots sorted by expert with the per-projection kernels (grouped_mm, loop)."""
        w_gate_up, w_down = self.w_gate_up_E2FD.to(x_SD.dtype), self.w_down_EDF.to(x_SD.dtype)
        return expert_ffn(x_SD, w_gate_up, w_down, counts_E, self.kernel)

    def forward_loop(self, x_TD: Tensor, weights_TK: Tensor, indices_TK: Tensor) -> Tensor:
        """Plain reference of `forward`: one expert at a time over the tokens that picked it."""
        out_TD = torch.zeros_like(x_TD)
        for e in range(self.num_experts):
            t, k = torch.where(indices_TK == e)
            if t.numel():
                gate, up = (x_TD[t] @ self.w_gate_up_E2FD[e].T).chunk(2, dim=-1)
                y = (F.silu(gate) * up) @ self.w_down_EDF[e].T
                out_TD = out_TD.index_add(0, t, weights_TK[t, k, None].to(y.dtype) * y)
        return out_TD


class MoE(nn.Module):
    """Routed experts (the group's bank) plus the always-on shared experts. The route comes from outside
    because with pre-gating it was computed one layer earlier."""

    def __init__(self, config: Megrez2Config, experts: RoutedExperts, owns_experts: bool = True):
        super().__init__()
        self.gate = Gate(config)
        self.experts = experts  # the same object in every layer of the group
        width = config.n_shared_experts * config.moe_intermediate_size
        self.shared_experts = MLP(config.hidden_size, width) if width else None
        if not owns_experts:
            # The bank belongs to the group leader's layer: state_dict() lists it there only (as the official
            # checkpoint does, and so weight syncs do not copy it three times); loading takes it from there.
            self.register_state_dict_post_hook(_drop_borrowed_bank)
            self.register_load_state_dict_pre_hook(_lend_borrowed_bank)

    def forward(self, x_BTD: Tensor, route: Route) -> Tensor:
        weights_TK, indices_TK = route
        x_TD = x_BTD.reshape(-1, x_BTD.shape[-1])
        y_TD = self.experts(x_TD, weights_TK, indices_TK)
        if self.shared_experts is not None:
            y_TD = y_TD + self.shared_experts(x_TD)  # no gate on the shared experts' output
        return y_TD.view(x_BTD.shape)


def _drop_borrowed_bank(module: MoE, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for name in [n for n in state_dict if n.startswith(prefix + "experts.")]:
        del state_dict[name]


def _lend_borrowed_bank(module: MoE, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    # The leader's layer comes first and has loaded the bank already: "load" it onto itself.
    for name, tensor in module.experts.state_dict(keep_vars=True).items():
        state_dict.setdefault(prefix + "experts." + name, tensor.detach())


# ---- model


class Block(nn.Module):
    """One decoder layer. Split in two halves because pre-gating reads the FFN input between them."""

    def __init__(self, config: Megrez2Config, layer_id: int, experts: RoutedExperts | None):
        super().__init__()
        self.layer_id = layer_id
        self.is_moe = experts is not None
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        if experts is None:
            self.mlp: MLP | MoE = MLP(config.hidden_size, config.intermediate_size)
        else:
            self.mlp = MoE(config, experts, owns_experts=config.group_leader(layer_id) == layer_id)

    def attend(self, h_BTD: Tensor, ctx: Context) -> tuple[Tensor, Tensor]:
        """Returns the residual stream after attention and the FFN input (post-attention RMSNorm of it)."""
        a_BTD = h_BTD + self.self_attn(self.input_layernorm(h_BTD), ctx, self.layer_id)
        return a_BTD, self.post_attention_layernorm(a_BTD)

    def feed_forward(self, x_BTD: Tensor, route: Route | None) -> Tensor:
        return self.mlp(x_BTD, route) if self.is_moe else self.mlp(x_BTD)


def layer_banks(config: Megrez2Config) -> list[RoutedExperts | None]:
    """The expert bank of every layer: None for dense layers, and one `RoutedExperts` object per group of
    `experts_shared_frequency` MoE layers, the same object at each of the group's layers."""
    banks: dict[int, RoutedExperts] = {}
    out: list[RoutedExperts | None] = []
    for i in range(config.num_hidden_layers):
        if not config.is_moe_layer(i):
            out.append(None)
            continue
        leader = config.group_leader(i)
        if leader not in banks:
            banks[leader] = RoutedExperts(
                config.n_routed_experts, config.hidden_size, config.moe_intermediate_size
            )
        out.append(banks[leader])
    return out


RouteChoice = tuple[Tensor, Tensor, Tensor]  # a Route and the router's own choice


class Megrez2Model(nn.Module):
    """The trunk (official names `model.*`): embeddings, decoder layers, final norm."""

    def __init__(self, config: Megrez2Config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        banks = layer_banks(config)
        self.layers = nn.ModuleList(Block(config, i, bank) for i, bank in enumerate(banks))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, input_ids_BT: Tensor, ctx: Context) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Final hidden states (B, T, D), the expert indices (B*T, K) each MoE layer used, and those its
        router picked itself (the same tensors unless a routing replay imposed others)."""
        h_BTD = self.embed_tokens(input_ids_BT)
        route, used, chosen = None, [], []
        recompute = self.config.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if recompute:
                h_BTD, route, route_next = checkpoint(
                    self._layer_step, i, h_BTD, route, ctx, use_reentrant=False
                )
            else:
                h_BTD, route, route_next = self._layer_step(i, h_BTD, route, ctx)
            if layer.is_moe:
                used.append(route[1])
                chosen.append(route[2])
            route = route_next
        return self.norm(h_BTD), used, chosen

    def _layer_step(
        self, i: int, h_BTD: Tensor, route: RouteChoice | None, ctx: Context
    ) -> tuple[Tensor, RouteChoice | None, RouteChoice | None]:
        """Layer i: returns (new residual stream, the route layer i used, layer i+1's route if pre-gated)."""
        layer = self.layers[i]
        a_BTD, x_BTD = layer.attend(h_BTD, ctx)
        x_TD = x_BTD.reshape(-1, x_BTD.shape[-1])
        route_next = None
        if self.config.pre_gate and i + 1 < len(self.layers) and self.layers[i + 1].is_moe:
            # Pre-gating: layer i+1's router (its own weights) reads layer i's FFN input, so its experts are
            # known before layer i's FFN runs. An engine prefetches them from a forward hook on that Gate.
            route_next = self._route(i + 1, x_TD, ctx)
        if layer.is_moe and route is None:  # pre_gate=False, or the first MoE layer with nothing before it
            route = self._route(i, x_TD, ctx)
        return a_BTD + layer.feed_forward(x_BTD, None if route is None else route[:2]), route, route_next

    def _route(self, i: int, x_TD: Tensor, ctx: Context) -> RouteChoice:
        """Layer i's (mixing weights, experts used, experts its router picks itself). Under routing replay the
        router's own pick is computed apart (one small matmul) for the routing mismatch metric."""
        gate, fixed = self.layers[i].mlp.gate, ctx.replay(i)
        weights_TK, indices_TK = gate(x_TD, fixed)
        return weights_TK, indices_TK, indices_TK if fixed is None else gate.choose(x_TD)


@dataclass
class CausalLMOutput:
    """What one forward returns. L counts MoE layers only (layer first_k_dense_replace is index 0)."""

    logits: Tensor | None  # (B, T, V), (N, V) with logits_at, None with a TokenScore
    # (L, B, T, K) int64: the experts each MoE layer used per token, chosen or replayed
    expert_indices: Tensor | None
    # (L, B, T, K) int64: the experts each MoE layer's router picked itself; `expert_indices` unless replayed
    router_choice: Tensor | None
    # (L, E) int64: tokens per expert per MoE layer, padding excluded (the load-balance metric)
    expert_counts: Tensor | None
    cache: KVCache | None  # the cache passed in, extended by this call
    logprobs: Tensor | None = None  # (N,) with a TokenScore: log π_T,p of its targets
    entropy: Tensor | None = None  # (N,) with a TokenScore: entropy of π_T,p there (no gradient)


@dataclass
class TokenScore:
    """Ask the forward for log-probs of given next tokens instead of logits (`sampling.linear_logprobs`:
    the LM head runs in chunks and the (N, V) logits never exist). Position `index[i]` of the flattened
    (B*T) tokens is scored on `targets[i]`; a position may be listed several times (a shared prompt's last
    token predicts each response's first)."""

    index: Tensor  # (N,) int64
    targets: Tensor  # (N,) int64
    temperature: float = 1.0
    top_p: float = 1.0


class Megrez2ForCausalLM(nn.Module):
    """Megrez2 with its LM head. Official parameter names; see checkpoint.py for the on-disk layout."""

    def __init__(self, config: Megrez2Config):
        super().__init__()
        self.config = config
        self.model = Megrez2Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.register_load_state_dict_pre_hook(check_tied_load)  # a tied head and embedding must agree
        self.reset_parameters()

    def _apply(self, fn: Callable, recurse: bool = True) -> Megrez2ForCausalLM:
        # Leaving the meta device (`to_empty`, as checkpoints load) replaces parameters module by module,
        # which unties a tied head: it would stay uninitialised and then train apart from the embedding.
        super()._apply(fn, recurse)
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        return self

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02) -> None:
        """Random init: normal(0, std) matrices, unit norms, zero correction bias. Free on the meta device."""
        for module in self.modules():
            for p in module.parameters(recurse=False):
                if isinstance(module, RMSNorm):
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, std)
            if isinstance(module, Gate):
                module.e_score_correction_bias.zero_()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        cache: KVCache | None = None,
        replay_indices: Tensor | None = None,
        document_ids: Tensor | None = None,
        logits_at: Tensor | None = None,
        packing: Packing | None = None,
        score: TokenScore | None = None,
    ) -> CausalLMOutput:
        """input_ids (B, T). attention_mask (B, T): 1 = real token, 0 = padding, for these T tokens only
        (a cache remembers earlier ones); left or right padding both work. cache: extended in place
        (inference). replay_indices (L, B, T, K): experts each MoE layer must use (routing replay from
        rollouts; a token whose K entries are -1 keeps its router's choice); the mixing weights still come
        from the current routers. document_ids (B, T): packed rows, several samples per row (one contiguous
        run of ids each, -1 padding): no token attends across samples and positions restart at 0 per
        sample, so each sample's outputs equal running it alone (instead of attention_mask; no cache).
        packing: the general form of document_ids (`attention.Packing`: sequences may share a prefix run).
        logits_at (B, T) bool: the LM head runs at those positions only and logits are (N, V), N = the
        count of True. score: log-probs and entropy of given next tokens instead of logits (`TokenScore`).
        Raises ValueError on a packing with an attention_mask or a cache."""
        B, T = input_ids.shape
        if document_ids is not None:
            packing = Packing.from_documents(document_ids.to(input_ids.device))
        if packing is not None and (cache is not None or attention_mask is not None):
            raise ValueError("packed rows (document_ids) take neither an attention_mask nor a KV cache")
        ctx, valid_BT = self._context(input_ids, attention_mask, cache, replay_indices, packing)
        h_BTD, used, chosen = self.model(input_ids, ctx)
        logits = logprobs = entropy = None
        if score is not None:  # the head inside forward: under FSDP its weight is gathered only here
            h_ND = h_BTD.reshape(B * T, -1)[score.index]
            logprobs, entropy = linear_logprobs(
                h_ND, self.lm_head.weight, score.targets, score.temperature, score.top_p
            )
        else:
            logits = self.lm_head(h_BTD if logits_at is None else h_BTD[logits_at])
        if cache is not None:
            cache.next_pos += T if valid_BT is None else valid_BT.sum(1)
            cache.length += T
        indices = torch.stack(used).view(len(used), B, T, -1) if used else None
        choice = indices if replay_indices is None or not used else torch.stack(chosen).view(indices.shape)
        counts = None if indices is None else expert_counts(indices, valid_BT, self.config.n_routed_experts)
        return CausalLMOutput(logits, indices, choice, counts, cache, logprobs, entropy)

    def _context(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        cache: KVCache | None,
        replay: Tensor | None,
        packing: Packing | None = None,
    ) -> tuple[Context, Tensor | None]:
        B, T = input_ids.shape
        replay_LTK = None if replay is None else replay.reshape(replay.shape[0], B * T, -1)
        first_moe = self.config.first_k_dense_replace
        if packing is not None:  # packed sequences: attention within each (and its prefix), own positions
            pos = packing.positions.to(input_ids.device)
            cos, sin = rope_cos_sin(pos, self.config.head_dim, self.config.rope_theta)
            ctx = Context(cos, sin, None, False, None, replay_LTK, first_moe, packing)
            return ctx, packing.valid.to(pos.device)
        valid_BT = (
            None if attention_mask is None else attention_mask.to(device=input_ids.device, dtype=torch.bool)
        )
        padded = valid_BT is not None and not bool(valid_BT.all())
        start_B1 = torch.zeros(B, 1, dtype=torch.int64, device=input_ids.device)
        q_start, key_valid = 0, valid_BT if padded else None
        if cache is not None:
            if cache.length + T > cache.max_len:
                raise ValueError(f"KV cache full: {cache.length} + {T} tokens > max_len {cache.max_len}")
            q_start, start_B1 = cache.length, cache.next_pos[:, None]
            cache.key_valid[:, q_start : q_start + T] = True if valid_BT is None else valid_BT
            cache.has_padding = cache.has_padding or padded
            key_valid = cache.key_valid[:, : q_start + T] if cache.has_padding else None
        # RoPE positions count real tokens only: a left-padded row starts at 0 (padding gets a dummy
        # position).
        if valid_BT is None:
            pos_BT = start_B1 + torch.arange(T, device=input_ids.device)
        else:
            pos_BT = (start_B1 + valid_BT.long().cumsum(1) - 1).clamp_min(0)
        cos, sin = rope_cos_sin(pos_BT, self.config.head_dim, self.config.rope_theta)
        mask, is_causal = build_attention_mask(key_valid, q_start, T, input_ids.device)
        return Context(cos, sin, mask, is_causal, cache, replay_LTK, first_moe), valid_BT

    def register_route_hook(self, fn: Callable[[int, Tensor, Tensor], None]) -> RouteHooks:
        """Call fn(layer_id, weights_TK, indices_TK) as soon as a MoE layer's experts are chosen: with
        pre-gating that is right after the previous layer's FFN input exists, one FFN ahead of use, which is
        when an engine prefetches the experts. Under activation checkpointing it fires again in backward."""
        handles = []
        for i in self.config.moe_layer_ids:
            gate = self.model.layers[i].mlp.gate
            handles.append(gate.register_forward_hook(lambda _m, _args, out, i=i: fn(i, *out)))
        return RouteHooks(handles)

    # -- bookkeeping
    @torch.no_grad()
    def update_router_bias(self, expert_counts_LE: Tensor) -> None:
        """Aux-loss-free load balancing (Wang et al. 2024; DeepSeek-V3 section 2.1.2): after an optimizer
        step, move each correction bias toward equal load, b_e += rate * sign(mean load - load_e). It changes
        selection only. A no-op while config.router_bias_update_rate is 0, the RL setting: the learner must
        keep the routing the rollouts saw."""
        rate = self.config.router_bias_update_rate
        if rate == 0:
            return
        for layer_id, counts_E in zip(self.config.moe_layer_ids, expert_counts_LE, strict=True):
            load_E = counts_E.float()
            gate = self.model.layers[layer_id].mlp.gate
            gate.e_score_correction_bias += rate * torch.sign(load_E.mean() - load_E)

    def num_parameters(self, activated: bool = False, embeddings: bool = True) -> int:
        """Stored parameters (each bank once, router biases included), or with `activated` those one token
        uses: everything but the routed experts, plus k experts' worth in each MoE layer. `embeddings=False`
        leaves out embed_tokens and lm_head (the model card's "3B activated" is counted that way)."""
        config, total = self.config, 0
        skip = set() if embeddings else {id(self.model.embed_tokens.weight), id(self.lm_head.weight)}
        for module in self.modules():
            tensors = list(module.parameters(recurse=False))
            if isinstance(module, Gate):
                tensors.append(module.e_score_correction_bias)
            if isinstance(module, RoutedExperts) and activated:
                continue
            total += sum(t.numel() for t in tensors if id(t) not in skip)
            skip.update(id(t) for t in tensors)  # a bank is reachable from 3 layers: count it once
        if activated:
            per_expert = 3 * config.hidden_size * config.moe_intermediate_size
            total += len(config.moe_layer_ids) * config.num_experts_per_tok * per_expert
        return total

    # -- checkpoints in the official layout (see checkpoint.py)
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        **config_overrides: Any,
    ) -> Megrez2ForCausalLM:
        """Built on the meta device, allocated empty on `device`, then the checkpoint streamed into it (names
        and shapes checked first: `CheckpointMismatchError`). dtype: default the config's torch_dtype, else
        float32. config_overrides: rlvr switches such as activation_checkpointing=True."""
        path = Path(path)
        config = dataclasses.replace(Megrez2Config.from_json(path / "config.json"), **config_overrides)
        dtype = dtype or (getattr(torch, config.torch_dtype) if config.torch_dtype else torch.float32)
        with torch.device("meta"):
            model = cls(config)
        model.to(dtype=dtype).to_empty(device=device)
        load_checkpoint(model, path)
        return model

    @classmethod
    def from_state_dict(
        cls, config: Megrez2Config, state: dict[str, Tensor], device: torch.device | str = "cpu"
    ) -> Megrez2ForCausalLM:
        """A model holding a copy of `state` (no random init: built on meta, allocated empty, then filled)."""
        with torch.device("meta"):
            model = cls(config)
        model = model.to_empty(device=device)
        model.load_state_dict(state)
        return model

    def save_pretrained(self, path: str | Path, max_shard_bytes: int = 4 << 30) -> None:
        """config.json and safetensors in the official layout (sharded past `max_shard_bytes`)."""
        save_pretrained(self, path, max_shard_bytes=max_shard_bytes)


@dataclass
class RouteHooks:
    """Handles returned by `register_route_hook`; `remove()` detaches them all."""

    handles: list[Any]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@torch.no_grad()
def expert_counts(indices_LBTK: Tensor, valid_BT: Tensor | None, num_experts: int) -> Tensor:
    """(L, E) tokens routed to each expert in each MoE layer, padding excluded."""
    L, B, T, K = indices_LBTK.shape
    flat_LS = indices_LBTK.reshape(L, -1)
    ones_S = torch.ones(B * T * K, dtype=torch.int64, device=flat_LS.device)
    if valid_BT is not None:
        ones_S = valid_BT.reshape(B * T, 1).expand(B * T, K).reshape(-1).long()
    counts = torch.zeros(L, num_experts, dtype=torch.int64, device=flat_LS.device)
    return counts.scatter_add_(1, flat_LS, ones_S.expand(L, -1))


def max_violation(expert_counts_LE: Tensor) -> Tensor:
    """Per-layer load imbalance (max load - mean load) / mean load; 0 is perfectly balanced (the "MaxVio"
    metric of the aux-loss-free balancing paper)."""
    load = expert_counts_LE.float()
    mean = load.mean(-1)
    return (load.max(-1).values - mean) / mean.clamp_min(1e-9)


def parameter_counts(config: Megrez2Config) -> dict[str, int]:
    """Stored and per-token activated parameter counts of a config, built on the meta device (no memory).

    "stored" counts each shared expert bank once; "activated" counts k routed experts per MoE layer plus
    everything else; "activated_no_embeddings" leaves out embed_tokens and lm_head, as the model card's
    "A3B" does."""
    with torch.device("meta"):
        model = Megrez2ForCausalLM(config)
    return {
        "stored": model.num_parameters(),
        "activated": model.num_parameters(activated=True),
        "activated_no_embeddings": model.num_parameters(activated=True, embeddings=False),
    }


if __name__ == "__main__":  # smoke run: python -m rlvr.model.megrez2
    torch.manual_seed(0)
    with torch.device("meta"):
        real = Megrez2ForCausalLM(Megrez2Config.preset("megrez2-3x7b-a3b"))
    print(
        f"megrez2-3x7b-a3b: {real.num_parameters() / 1e9:.3f}B stored, "
        f"{real.num_parameters(activated=True, embeddings=False) / 1e9:.3f}B activated (no embeddings)"
    )
    model = Megrez2ForCausalLM(Megrez2Config.preset("tiny"))
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    out = model(ids)
    token_logprobs(out.logits[:, :-1], ids[:, 1:]).mean().backward()
    print(f"tiny: logits {tuple(out.logits.shape)}, experts {tuple(out.expert_indices.shape)}")
    print(f"tiny: expert load max-violation per MoE layer {max_violation(out.expert_counts).tolist()}")
    with torch.no_grad():
        cache = KVCache.allocate(model.config, batch_size=2, max_len=24)
        step = model(ids, cache=cache)
        for _ in range(4):
            step = model(step.logits[:, -1:].argmax(-1), cache=cache)
    print(f"tiny: decoded to {cache.length} slots; smoke run ok")


load_pretrained = Megrez2ForCausalLM.from_pretrained
__all__ = [  # re-exported from their own modules for `from rlvr.model.megrez2 import ...`
    "PRESETS",
    "PRESET_NAMES",
    "RUNTIME_FIELDS",
    "Gate",
    "KVCache",
    "Megrez2Config",
    "Packing",
    "Route",
    "build_attention_mask",
    "grouped_mm_supported",
    "preset_config",
    "route_tokens",
    "token_logprobs",
]
