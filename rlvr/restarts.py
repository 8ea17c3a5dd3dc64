"""Surviving dead workers. Ray restarts a rollout or verifier actor whose process died (`max_restarts`); the
driver sees the failed call, brings the restarted actor up to date (the current weights, for a rollout
worker) and sends it the same work again, so a step completes with every prompt accounted for. Too many
failures in a window mean something is wrong beyond bad luck: `RestartBudget` then raises `WorkerFailures`,
and the trainer checkpoints and stops with that message."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

T = TypeVar("T")


class WorkerFailures(RuntimeError):
    """More worker failures in the window than `rollout.max_restarts` allows."""


class RestartBudget:
    """Counts worker failures; more than `max_failures` within `window_s` seconds raises `WorkerFailures`."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self.times: deque[float] = deque()
        self.total: dict[str, int] = {}  # failures so far per kind of worker

    def record(self, kind: str, detail: str) -> None:
        now = time.monotonic()
        self.times.append(now)
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()
        self.total[kind] = self.total.get(kind, 0) + 1
        print(
            f"warning: a {kind} died ({detail.splitlines()[0]}); restarted, its work sent again", flush=True
        )
        if len(self.times) > self.max_failures:
            raise WorkerFailures(
                f"{len(self.times)} worker failures within {self.window_s:g} s (rollout.max_restarts = "
                f"{self.max_failures}); last: {kind}: {detail.splitlines()[0]}"
            )


def gather_with_restarts(
    futures: list[Any],
    redo: Callable[[int], Any],
    budget: RestartBudget,
    kind: str,
    patience_s: float = 600.0,
) -> list[Any]:
    """ray.get of each future; when the actor behind future i died, the failure is recorded and `redo(i)`
    (which brings the restarted actor up to date and returns a new future for the same work) is waited for
    instead, retried while Ray is still restarting the actor (up to `patience_s`)."""
    out = []
    for i, future in enumerate(futures):
        try:
            out.append(ray.get(future))
            continue
        except RayActorError as exc:
            budget.record(kind, str(exc))
        out.append(_redo_when_up(lambda i=i: ray.get(redo(i)), patience_s))
    return out


def _redo_when_up(call: Callable[[], T], patience_s: float) -> T:
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return call()
        except ActorUnavailableError:  # still restarting (a vLLM engine takes seconds to start)
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
