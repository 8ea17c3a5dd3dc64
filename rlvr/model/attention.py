"""Llama-style attention for Megrez2: RMSNorm, rotate-half RoPE, grouped-query attention over SDPA, and the
KV cache for incremental decoding (left or right padding). Nothing here is specific to the MoE.

Shape suffixes: B batch, T query tokens, S key slots, H heads, d head_dim, D hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlvr.model.config import Megrez2Config


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))  # statistics in fp32 (or fp64), as HF Llama
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_cos_sin(pos_BT: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (B, 1, T, head_dim) in fp32 for the rotate-half convention (each frequency is used by
    dimension j and j + head_dim/2). Computed per call: a few KB, and nothing to rebuild after meta init."""
    exponent = torch.arange(0, head_dim, 2, device=pos_BT.device, dtype=torch.int64).float() / head_dim
    inv_freq = 1.0 / (theta**exponent)
    angle = pos_BT.float()[..., None] * inv_freq  # (B, T, hd/2)
    angle = torch.cat([angle, angle], dim=-1)[:, None]
    return angle.cos(), angle.sin()


def apply_rope(x_BHTd: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x = x_BHTd.to(torch.promote_types(x_BHTd.dtype, torch.float32))
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x_BHTd.dtype)


@dataclass
class KVCache:
    """Preallocated keys and values of every layer for incremental decoding (prefill, then a token a step).

    Slots fill left to right for the whole batch at once. `key_valid` marks the slots that hold real tokens,
    so prompts may be left- or right-padded: padded slots are never attended to, and a row's RoPE positions
    count only its real tokens. Use under `torch.no_grad()`: the cache is written in place.
    """

    k: list[Tensor]  # per layer (B, H_kv, max_len, head_dim)
    v: list[Tensor]  # per layer (B, H_kv, max_len, head_dim)
    key_valid: Tensor  # (B, max_len) bool: slot holds a real token
    next_pos: Tensor  # (B,) int64: RoPE position of each row's next real token
    length: int = 0  # slots filled so far (same for every row)
    has_padding: bool = False  # some filled slot is padding: attention needs an explicit mask

    @classmethod
    def allocate(
        cls,
        config: Megrez2Config,
        batch_size: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> KVCache:
        shape = (batch_size, config.num_key_value_heads, max_len, config.head_dim)
        n = config.num_hidden_layers
        return cls(
            k=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)],
            v=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)],
            key_valid=torch.zeros(batch_size, max_len, dtype=torch.bool, device=device),
            next_pos=torch.zeros(batch_size, dtype=torch.int64, device=device),
        )

    @property
    def max_len(self) -> int:
        return self.key_valid.shape[1]

    def store(self, layer_id: int, k_BHTd: Tensor, v_BHTd: Tensor) -> tuple[Tensor, Tensor]:
        """Write this step's keys/values at slots [length, length+T) and return all filled slots."""
        end = self.length + k_BHTd.shape[2]
        self.k[layer_id][:, :, self.length : end] = k_BHTd
        self.v[layer_id][:, :, self.length : end] = v_BHTd
        return self.k[layer_id][:, :, :end], self.v[layer_id][:, :, :end]


@dataclass
class Context:
    """What every layer of one forward call shares (built once by the model)."""

    cos: Tensor  # (B, 1, T, head_dim) fp32
    sin: Tensor
    attn_mask: Tensor | None  # (B, 1, T, S) bool, True = may attend; None = plain causal (or one decode row)
    is_causal: bool
    cache: KVCache | None
    replay_LTK: Tensor | None  # (L, B*T, K) fixed experts per MoE layer (routing replay)
    first_moe_layer: int
    packing: Packing | None = None  # several sequences per row: attention within each (and its prefix)

    def replay(self, layer_id: int) -> Tensor | None:
        return None if self.replay_LTK is None else self.replay_LTK[layer_id - self.first_moe_layer]


class Attention(nn.Module):
    """Llama GQA: no biases, no qk-norm, RoPE over the full head, scale 1/sqrt(head_dim)."""

    def __init__(self, config: Megrez2Config):
        super().__init__()
        d, hd = config.hidden_size, config.head_dim
        self.n_heads, self.n_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = hd
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, self.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, self.n_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=False)

    def forward(self, x_BTD: Tensor, ctx: Context, layer_id: int) -> Tensor:
        B, T, _ = x_BTD.shape
        q = self.q_proj(x_BTD).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x_BTD).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x_BTD).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, ctx.cos, ctx.sin), apply_rope(k, ctx.cos, ctx.sin)
        if ctx.cache is not None:
            k, v = ctx.cache.store(layer_id, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)
        scale = 1.0 / math.sqrt(self.head_dim)
        if ctx.packing is not None:
            out = packed_attention(q, k, v, ctx.packing.runs, scale, ctx.packing.masks)
        elif ctx.attn_mask is None:
            gqa = self.n_heads != self.n_kv_heads
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=ctx.is_causal, scale=scale, enable_gqa=gqa
            )
        else:  # SDPA's fused kernels take a mask only without GQA: expand the kv heads (padded batches only)
            rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=ctx.attn_mask, scale=scale)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class Run(NamedTuple):
    """Tokens [start, end) of a packed row: one sequence, or a prefix several sequences share, or padding.
    A sequence attends causally to itself after the whole of its prefix run [prefix_start, prefix_end), if
    any (a group's prompt); padding attends to nothing and gives zeros."""

    start: int
    end: int
    sample: bool = True
    prefix_start: int = 0
    prefix_end: int = 0


@dataclass
class Packing:
    """Several sequences per row (B, T): their runs per row and RoPE positions that restart per sequence (a
    sequence after a prefix continues the prefix's positions). Each sequence's outputs then equal running
    it alone, or after its prefix alone."""

    runs: list[list[Run]]
    positions: Tensor  # (B, T) int64
    valid: Tensor  # (B, T) bool: not padding
    masks: dict[tuple[int, int], Tensor] = field(default_factory=dict)  # built once, used by every layer

    @classmethod
    def from_documents(cls, doc_BT: Tensor) -> Packing:
        """From per-token document ids (B, T): one contiguous run of the same id per sequence, −1 padding."""
        runs = []
        for row in doc_BT.tolist():
            out, start = [], 0
            for t in range(1, len(row) + 1):
                if t == len(row) or row[t] != row[start]:
                    out.append(Run(start, t, row[start] >= 0))
                    start = t
            runs.append(out)
        return cls(runs, document_positions(doc_BT), doc_BT >= 0)


def packed_attention(
    q_BHTd: Tensor,
    k_BHTd: Tensor,
    v_BHTd: Tensor,
    runs: list[list[Run]],
    scale: float,
    masks: dict[tuple[int, int], Tensor] | None = None,
) -> Tensor:
    """Causal attention within each sequence of packed rows (after its prefix run, if any): SDPA's fused
    causal kernel per sequence, so the cost is Σ length² rather than T² per row and no (T, T) mask is built;
    a sequence after a prefix gets a (length, prefix + length) mask. Padding runs give zeros."""
    gqa = q_BHTd.shape[1] != k_BHTd.shape[1]
    rows = []
    for b, row in enumerate(runs):
        parts = []
        for run in row:
            q = q_BHTd[b : b + 1, :, run.start : run.end]
            if not run.sample:
                parts.append(torch.zeros_like(q))
                continue
            k, v = k_BHTd[b : b + 1, :, run.start : run.end], v_BHTd[b : b + 1, :, run.start : run.end]
            mask, prefix = None, run.prefix_end - run.prefix_start
            if prefix:
                k = torch.cat([k_BHTd[b : b + 1, :, run.prefix_start : run.prefix_end], k], dim=2)
                v = torch.cat([v_BHTd[b : b + 1, :, run.prefix_start : run.prefix_end], v], dim=2)
                n, masks = run.end - run.start, {} if masks is None else masks
                if (prefix, n) not in masks:
                    masks[prefix, n] = torch.ones(n, prefix + n, dtype=torch.bool, device=q.device).tril(
                        prefix
                    )
                mask = masks[prefix, n]
            parts.append(
                F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, is_causal=mask is None, scale=scale, enable_gqa=gqa
                )
            )
        rows.append(torch.cat(parts, dim=2))
    return torch.cat(rows)


def build_attention_mask(
    key_valid_BS: Tensor | None, q_start: int, T: int, device: torch.device
) -> tuple[Tensor | None, bool]:
    """(mask, is_causal) for queries in slots [q_start, q_start+T) over keys in slots [0, q_start+T).

    `key_valid_BS` None means every slot holds a real token; then SDPA's own causal path is used where it
    applies. A padding query is allowed to see itself so that no softmax row is empty (its output is never
    used).
    """
    if key_valid_BS is None and q_start == 0:
        return None, T > 1
    if key_valid_BS is None and T == 1:
        return None, False
    q_slot = torch.arange(q_start, q_start + T, device=device)[:, None]
    k_slot = torch.arange(q_start + T, device=device)[None, :]
    mask_BTS = (k_slot <= q_slot)[None]
    if key_valid_BS is not None:
        mask_BTS = mask_BTS & key_valid_BS[:, None, :]
    return (mask_BTS | (k_slot == q_slot))[:, None], False


def document_positions(doc_BT: Tensor) -> Tensor:
    """RoPE positions that restart at 0 with every sample of a packed row, (B, T) int64.

    `doc_BT` (B, T) int: each sample's tokens are one contiguous run of the same id; -1 marks padding (its
    position is a dummy). Position of token t = t − the index where its run starts."""
    B, T = doc_BT.shape
    t = torch.arange(T, device=doc_BT.device).expand(B, T)
    starts = torch.ones_like(doc_BT, dtype=torch.bool)
    starts[:, 1:] = doc_BT[:, 1:] != doc_BT[:, :-1]
    run_start = torch.where(starts, t, 0).cummax(dim=1).values
    return t - run_start
