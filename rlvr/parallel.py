"""Data parallelism for the learner, in one place: the process group, the all-reduce, FSDP2 wrapping and
gathering full weights. The loss code never calls a collective; it gets `DataParallel.sum` as a callback.

Several ranks each hold a shard of the step's sequences. The loss divides by the *global* token count (an
all-reduced sum) and gradients are summed, so R ranks make exactly the update one rank makes on the whole
batch (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass
class DataParallel:
    """One rank's view of the learner's data-parallel group (world_size 1: no process group at all)."""

    rank: int = 0
    world_size: int = 1
    fsdp: bool = False

    @classmethod
    def join(
        cls, rank: int, world_size: int, init_method: str | None, device: torch.device, fsdp: bool
    ) -> DataParallel:
        """Joins the group at `init_method` (tcp://HOST:PORT of rank 0) when world_size > 1."""
        if world_size > 1 and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
        return cls(rank, world_size, fsdp and world_size > 1)

    def sum(self, tensor: Tensor) -> Tensor:
        """In-place sum over ranks (identity on one rank); returns the tensor."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def max(self, value: int, device: torch.device) -> int:
        """The largest `value` over ranks (itself on one rank)."""
        if self.world_size == 1:
            return value
        slots = torch.zeros(self.world_size, device=device)
        slots[self.rank] = value
        return int(self.sum(slots).max())

    def shard(self, model: nn.Module, device: torch.device) -> None:
        """FSDP2 over the ranks: weights, gradients and AdamW state split across ranks, gathered per forward.
        The whole model is one unit because a group's expert bank is shared by three layers. Gradients are
        summed, not averaged: the loss is already divided by the global token count."""
        if not self.fsdp:
            return
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (self.world_size,))
        fully_shard(model, mesh=mesh)
        model.set_gradient_divide_factor(1.0)
        model.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no pre-multiplied sum

    def sum_gradients(self, model: nn.Module) -> None:
        """Sums every gradient over ranks (FSDP reduce-scatters its own during backward)."""
        if self.fsdp or self.world_size == 1:
            return
        for p in model.parameters():
            if p.grad is not None:
                self.sum(p.grad)

    def full_state(self, model: nn.Module) -> dict[str, Tensor]:
        """Full CPU weights under the model's parameter names; with FSDP a collective (every rank calls)."""
        state = {}
        for name, value in model.state_dict().items():
            value = value.full_tensor() if hasattr(value, "full_tensor") else value
            state[name] = value.detach().to("cpu", copy=True)
        return state

    def load_full_state(self, model: nn.Module, state: dict[str, Tensor]) -> None:
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
        else:
            model.load_state_dict(state)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def grad_norm(value: Tensor) -> float:
    """A clip_grad_norm_ result as a float (a DTensor under FSDP)."""
    return float(value.full_tensor() if hasattr(value, "full_tensor") else value)


def free_port(host: str = "") -> int:
    """A TCP port free on this machine right now (the OS picks it)."""
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
