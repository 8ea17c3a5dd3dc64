"""Autograd kernels of the MoE layer: the gather that dispatches token slots to experts and back, and the
matmul over slots sorted by expert (torch's grouped GEMM, or a loop over active experts with its own
backward). `megrez2.py` calls `_GatherRows` through `Dispatch` and `expert_matmul` through `RoutedExperts`.

Shape suffixes as in megrez2.py: S token-slots sorted by expert, E experts, I/O in/out features.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


class GatherRows(torch.autograd.Function):
    """y = x[index] where every row of x is read exactly `fan_out` times, so the backward is a gather too:
    grad_x[r] = sum of its fan_out consecutive rows of grad_y[back_index]. Autograd's own backward of x[index]
    is an accumulating scatter (index_put): 80-110 ms against 20 ms for the MoE layer of `small` on CPU."""

    @staticmethod
    def forward(ctx: Any, x_RD: Tensor, index_N: Tensor, back_index_N: Tensor, fan_out: int) -> Tensor:
        ctx.save_for_backward(back_index_N)
        ctx.fan_out = fan_out
        return x_RD[index_N]

    @staticmethod
    def backward(ctx: Any, grad_ND: Tensor) -> tuple[Tensor, None, None, None]:
        (back_index_N,) = ctx.saved_tensors
        grad = grad_ND[back_index_N]
        if ctx.fan_out > 1:
            grad = grad.view(-1, ctx.fan_out, grad.shape[-1]).sum(1)
        return grad, None, None, None


_grouped_mm = getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)


def grouped_mm_supported(x: Tensor, w: Tensor) -> bool:
    """torch's grouped GEMM takes bf16 on CUDA (sm80+) and fp32/bf16 on CPU, with 16-byte aligned rows."""
    if _grouped_mm is None or x.dtype != w.dtype:
        return False
    if x.device.type == "cuda":
        ok = x.dtype == torch.bfloat16 and torch.cuda.get_device_capability(x.device) >= (8, 0)
    else:
        ok = x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
    return ok and all(n * x.element_size() % 16 == 0 for n in w.shape[1:])


def expert_matmul(x_SI: Tensor, w_EOI: Tensor, counts_E: Tensor, kernel: str = "auto") -> Tensor:
    """y[s] = x[s] @ w[e(s)].T for slots sorted by expert: the one seam between dispatch and kernels.

    kernel "grouped_mm": torch's grouped GEMM, one launch for all experts (needs `grouped_mm_supported`).
    "loop": one matmul per *active* expert over its contiguous block (one host sync for the counts; never a
    pass over all experts or per token). "auto": grouped GEMM where supported (no host sync, so it suits
    torch.compile and CUDA graphs), else the loop. On CPU the two run at the same speed.
    """
    if kernel == "auto":
        kernel = "grouped_mm" if grouped_mm_supported(x_SI, w_EOI) else "loop"
    if kernel == "grouped_mm":
        if not grouped_mm_supported(x_SI, w_EOI):
            raise ValueError(
                f"grouped_mm does not take {x_SI.dtype} on {x_SI.device.type}; use kernel='loop'"
            )
        offsets_E = counts_E.cumsum(0).to(torch.int32)
        return _grouped_mm(x_SI, w_EOI.transpose(-2, -1), offs=offsets_E)
    if kernel != "loop":
        raise ValueError(f"unknown expert kernel {kernel!r}; use 'auto', 'grouped_mm' or 'loop'")
    return _ActiveExpertMatmul.apply(x_SI, w_EOI, counts_E.tolist())


def _expert_blocks(counts: list[int]) -> list[tuple[int, int, int]]:
    """(expert, first slot, end slot) of every expert that received slots."""
    blocks, start = [], 0
    for e, n in enumerate(counts):
        if n:
            blocks.append((e, start, start + n))
        start += n
    return blocks


class _ActiveExpertMatmul(torch.autograd.Function):
    """The loop fallback of `expert_matmul`, with its own backward.

    Plain autograd through `w_EOI[e]` would give every active expert a zero-filled gradient the size of the
    whole bank and then sum them: E bank-sized fills per call, slower than the HF loop it replaces. Here each
    expert's weight gradient is written into its row of one (E, O, I) buffer.
    """

    @staticmethod
    def forward(ctx: Any, x_SI: Tensor, w_EOI: Tensor, counts: list[int]) -> Tensor:
        ctx.blocks = _expert_blocks(counts)
        ctx.save_for_backward(x_SI, w_EOI)
        y_SO = x_SI.new_empty(x_SI.shape[0], w_EOI.shape[1])
        with torch.autocast(x_SI.device.type, enabled=False):  # callers cast; mm(out=) takes no autocast
            for e, a, b in ctx.blocks:
                torch.mm(x_SI[a:b], w_EOI[e].T, out=y_SO[a:b])
        return y_SO

    @staticmethod
    def backward(ctx: Any, grad_SO: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x_SI, w_EOI = ctx.saved_tensors
        grad_SO = grad_SO.contiguous().to(x_SI.dtype)
        grad_x = torch.empty_like(x_SI) if ctx.needs_input_grad[0] else None
        grad_w = torch.empty_like(w_EOI) if ctx.needs_input_grad[1] else None
        if grad_w is not None:  # experts that got no slots get a zero gradient; the others are overwritten
            for e in sorted(set(range(w_EOI.shape[0])) - {e for e, _, _ in ctx.blocks}):
                grad_w[e].zero_()
        with torch.autocast(x_SI.device.type, enabled=False):
            for e, a, b in ctx.blocks:
                if grad_x is not None:
                    torch.mm(grad_SO[a:b], w_EOI[e], out=grad_x[a:b])
                if grad_w is not None:
                    torch.mm(grad_SO[a:b].T, x_SI[a:b], out=grad_w[e])
        return grad_x, grad_w, None


def compute_dtype(x: Tensor) -> torch.dtype:
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
