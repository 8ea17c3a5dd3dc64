"""Autograd kernels of the MoE layer's routed experts, over token slots sorted by expert. `RoutedExperts`
(megrez2.py) runs one of three kernels (its `kernel`; "auto" picks by device):

  fused        (CPU) `FusedRoutedExperts`: dispatch, gate_up -> silu*up -> down and combine as one autograd
               node, expert by expert on single-threaded workers (one per intra-op thread);
  grouped_mm   torch's grouped GEMM per projection (`expert_matmul`), autograd through silu*up, with
               `Dispatch`'s gathers (`GatherRows`) before and after;
  loop         as grouped_mm, but one matmul per active expert per projection, with its own backward.

Shape suffixes as in megrez2.py: S token-slots sorted by expert, T tokens, K slots per token, E experts,
D hidden, F expert width, I/O in/out features.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


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


def expert_ffn(
    x_SD: Tensor, w_gate_up_E2FD: Tensor, w_down_EDF: Tensor, counts_E: Tensor, kernel: str
) -> Tensor:
    """down_e(silu(gate_e(x)) * up_e(x)) on (S, D) slots sorted by expert, with `expert_matmul` per projection
    (kernel "grouped_mm", "loop" or "auto") and autograd through silu * up: (S, D) -> (S, D)."""
    gate_SF, up_SF = expert_matmul(x_SD, w_gate_up_E2FD, counts_E, kernel).chunk(2, dim=-1)
    return expert_matmul(F.silu(gate_SF) * up_SF, w_down_EDF, counts_E, kernel)


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


# ---- the fused routed experts (CPU)


class FusedRoutedExperts(torch.autograd.Function):
    """Dispatch, SwiGLU experts and combine of one MoE call as one autograd node, run expert by expert on
    `parallel_blocks`' single-threaded workers: (T, D) -> (T, D),
    out[t] = sum_k w[t,k] * down_e(silu(gate_e(x[t])) * up_e(x[t])) with e the expert of slot (t, k).
    `plan` is the call's `Dispatch` (token_S, order_S, unsort_S, counts_E); weights are (E, 2F, D), (E, D, F).

    Why it is faster on CPU than a grouped GEMM per projection with autograd between them: each expert gathers
    its own rows and keeps them in cache through gate_up -> silu*up -> routing weight -> down (backward: down,
    the routing weights' gradient, the silu backward, gate_up, each weight gradient one matmul over the
    expert's contiguous block); the routing weight scales the F-wide silu*up rows rather than the D-wide
    output, so the output needs no second pass and is not saved; only x, gate/up and silu*up are saved; and
    every matmul runs on one thread, so the intra-op threads do not meet at a barrier per small matmul (on a
    machine shared with other work such a barrier waits for a descheduled thread, while the workers here take
    experts from a common queue).

    Deterministic: each expert's rows are computed by one thread with a fixed sequence of ops, whichever
    worker takes it, and a token's k slots are summed by a gather and a sum in k order: no atomics.
    """

    @staticmethod
    def selected(kernel: str, x: Tensor, w_down_EDF: Tensor, slots: int) -> bool:
        """Whether `kernel` means this kernel for a call on `slots` slots of inputs like x: "fused", or "auto"
        on CPU when the experts are big enough (AUTO_MIN_EXPERT_WORK per expert, 2 experts at least; with
        less, the ~25 Python-dispatched ops per expert cost more than a grouped GEMM's C++ loop: the `tiny`
        preset). Elsewhere "auto" is `expert_matmul`'s choice: "grouped_mm" where supported (which keeps
        CUDA free of host syncs), else "loop"."""
        if kernel not in ("auto", "fused", "grouped_mm", "loop"):
            raise ValueError(f"unknown expert kernel {kernel!r}; use 'auto', 'fused', 'grouped_mm' or 'loop'")
        if kernel != "auto":
            return kernel == "fused"
        active = min(slots, w_down_EDF.shape[0])
        big = active >= 2 and _work(w_down_EDF, slots, active) >= AUTO_MIN_EXPERT_WORK * active
        return x.device.type == "cpu" and big

    @staticmethod
    def forward(
        ctx: Any, x_TD: Tensor, w_TK: Tensor, w_gu_E2FD: Tensor, w_down_EDF: Tensor, plan: Any
    ) -> Tensor:
        (T, K), F_ = w_TK.shape, w_down_EDF.shape[2]
        x_TD, token_S, S = x_TD.contiguous(), plan.token_S, plan.token_S.numel()
        blocks = _expert_blocks(plan.counts_E.tolist())
        work = _work(w_down_EDF, S, active=len(blocks))  # the forward's; the backward does twice that
        w_S1 = w_TK.reshape(-1)[plan.order_S].unsqueeze(1)  # each sorted slot's routing weight
        x_SD, gu_S2F, act_SF = (
            x_TD.new_empty(S, x_TD.shape[1]),
            x_TD.new_empty(S, 2 * F_),
            x_TD.new_empty(S, F_),
        )
        y_SD = x_TD.new_empty(S, w_down_EDF.shape[1])

        def expert(e: int, a: int, b: int) -> None:
            x, gu, act = x_SD[a:b], gu_S2F[a:b], act_SF[a:b]
            torch.index_select(x_TD, 0, token_S[a:b], out=x)
            torch.mm(x, w_gu_E2FD[e].T, out=gu)
            torch._C._nn.silu(gu[:, :F_], out=act)
            act.mul_(gu[:, F_:])
            torch.mm(act * w_S1[a:b], w_down_EDF[e].T, out=y_SD[a:b])  # the weight on F columns, not D

        with torch.autocast(x_TD.device.type, enabled=False):  # callers cast; mm(out=) takes no autocast
            parallel_blocks(expert, blocks, work)
            out_TD = y_SD[plan.unsort_S].view(T, K, -1).sum(1)
        ctx.blocks, ctx.plan, ctx.work = blocks, plan, 2 * work
        ctx.save_for_backward(w_S1, w_gu_E2FD, w_down_EDF, x_SD, gu_S2F, act_SF)
        return out_TD

    @staticmethod
    @once_differentiable  # the workers write into buffers: no graph of the backward
    def backward(ctx: Any, grad_TD: Tensor) -> tuple[Tensor | None, ...]:
        w_S1, w_gu_E2FD, w_down_EDF, x_SD, gu_S2F, act_SF = ctx.saved_tensors
        need_x, need_w, need_gu, need_down = ctx.needs_input_grad[:4]
        token_S, unsort_S, blocks = ctx.plan.token_S, ctx.plan.unsort_S, ctx.blocks
        T, K = grad_TD.shape[0], token_S.numel() // grad_TD.shape[0]
        grad_TD = grad_TD.contiguous().to(x_SD.dtype)
        grad_w_S = w_S1.new_empty(w_S1.shape[0]) if need_w else None
        grad_x_SD = torch.empty_like(x_SD) if need_x else None
        grad_gu = _zeros_outside(w_gu_E2FD, blocks) if need_gu else None
        grad_down = _zeros_outside(w_down_EDF, blocks) if need_down else None

        def expert(e: int, a: int, b: int) -> None:
            g_out, act, w = torch.index_select(grad_TD, 0, token_S[a:b]), act_SF[a:b], w_S1[a:b]
            if grad_down is not None:
                torch.mm(g_out.T, act * w, out=grad_down[e])
            if grad_w_S is None and grad_x_SD is None and grad_gu is None:
                return
            g_act = torch.mm(g_out, w_down_EDF[e])  # d/d (act * w), (n, F) scratch that stays in cache
            if grad_w_S is not None:
                torch.linalg.vecdot(g_act, act, out=grad_w_S[a:b])
            _swiglu_backward(
                g_act.mul_(w), x_SD[a:b], gu_S2F[a:b], w_gu_E2FD[e],
                grad_x=None if grad_x_SD is None else grad_x_SD[a:b],
                grad_gu=None if grad_gu is None else grad_gu[e],
            )  # fmt: skip

        with torch.autocast(x_SD.device.type, enabled=False):
            parallel_blocks(expert, blocks, ctx.work)
            grad_x = None if grad_x_SD is None else grad_x_SD[unsort_S].view(T, K, -1).sum(1)
            grad_w = None if grad_w_S is None else grad_w_S[unsort_S].view(T, K)
        return grad_x, grad_w, grad_gu, grad_down, None


def _swiglu_backward(
    g_act_NF: Tensor, x_ND: Tensor, gu_N2F: Tensor, w_gu_2FD: Tensor, grad_x: Tensor | None,
    grad_gu: Tensor | None
) -> None:  # fmt: skip
    """One expert's backward through silu(gate) * up and the gate/up projection over its N slots, from g_act
    (the gradient of silu(gate) * up, overwritten), into the given output views (None: not needed). The same
    ops as autograd through silu(gate) * up (silu_backward, the products)."""
    if grad_x is None and grad_gu is None:
        return
    F_ = g_act_NF.shape[1]
    gate, up, g_gu_N2F = gu_N2F[:, :F_], gu_N2F[:, F_:], torch.empty_like(gu_N2F)
    torch._C._nn.silu(gate, out=g_gu_N2F[:, F_:])
    g_gu_N2F[:, F_:].mul_(g_act_NF)  # d/d up = silu(gate) * d/d act
    g_act_NF.mul_(up)  # d/d silu(gate)
    torch.ops.aten.silu_backward.grad_input(g_act_NF, gate, grad_input=g_gu_N2F[:, :F_])
    if grad_gu is not None:
        torch.mm(g_gu_N2F.T, x_ND, out=grad_gu)
    if grad_x is not None:
        torch.mm(g_gu_N2F, w_gu_2FD, out=grad_x)


def _zeros_outside(w_EOI: Tensor, blocks: list[tuple[int, int, int]]) -> Tensor:
    """An uninitialised gradient for w whose experts without slots are zero (the others get overwritten)."""
    grad = torch.empty_like(w_EOI)
    for e in sorted(set(range(w_EOI.shape[0])) - {e for e, _, _ in blocks}):
        grad[e].zero_()
    return grad


_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _workers(n: int) -> ThreadPoolExecutor:
    """A process-wide pool of n threads that run torch ops single-threaded (torch's thread count is per thread
    for OpenMP and MKL); rebuilt when the caller's thread count changes, dropped in a forked child."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != n:
            if _pool is not None:
                _pool[1].shutdown(wait=False)
            _pool = n, ThreadPoolExecutor(n, "rlvr-experts", initializer=torch.set_num_threads, initargs=(1,))
        return _pool[1]


def _forget_pool() -> None:
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()  # the parent's threads do not exist in a forked child


os.register_at_fork(after_in_child=_forget_pool)


# Below this much work a call runs on the caller's thread: waking the workers costs tens of microseconds
# idle, up to a scheduler tick on a loaded machine.
PARALLEL_MIN_WORK = 1 << 24
# "auto" takes the fused kernel on CPU from this much work per expert: `small` at 64 tokens (~12M), not
# `tiny` at 4096 (~6M), where it measured 5-8% slower than grouped_mm over the whole model.
AUTO_MIN_EXPERT_WORK = 1 << 23


def _work(w_down_EDF: Tensor, slots: int, active: int) -> int:
    """A forward's multiply-adds over `slots` slots and `active` experts, a weight read counted as 8 rows."""
    D, F_ = w_down_EDF.shape[1:]
    return 3 * D * F_ * (slots + 8 * active)


def parallel_blocks(
    fn: Callable[[int, int, int], None], blocks: list[tuple[int, int, int]], work: int
) -> None:
    """fn(expert, first slot, end slot) for every block, on as many single-threaded workers as the caller has
    intra-op threads; each worker takes the largest block left. fn must write only its own rows (and its own
    expert's gradient): the blocks run in any order and concurrently. Autograd's grad mode and inference mode
    are per thread, so the caller's are set in the workers; autocast is left off there. With less `work`
    than PARALLEL_MIN_WORK the blocks run in turn on the caller's thread."""
    threads = torch.get_num_threads()
    n = min(threads, len(blocks))
    if n <= 1 or work < PARALLEL_MIN_WORK:
        for block in blocks:
            fn(*block)
        return
    queue = iter(sorted(blocks, key=lambda blk: blk[1] - blk[2]))  # largest first: the last ones balance
    lock, grad, inference = threading.Lock(), torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def drain() -> None:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            while True:
                with lock:
                    block = next(queue, None)
                if block is None:
                    return
                fn(*block)

    for future in [_workers(threads).submit(drain) for _ in range(n)]:
        future.result()
