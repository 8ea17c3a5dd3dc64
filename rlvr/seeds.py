"""Named random streams. Every seed in a run is a hash of (run seed, purpose, indices), so no two streams
overlap however the work is split.

    prompt_seed(run, "rollout", step, p)    prompt p of RL step `step`
    sample_seed(prompt_seed, s)             sample s of that prompt (what the engine hands the sampler)

A prompt's samples depend only on (run seed, step, prompt index), not on which rollout worker got it or how
many workers there are. Adding an index (the old `seed + p·n + s`) made sample s+1 of step t the stream of
sample s of step t+1; hashing cannot collide that way (64-bit blake2b; a collision is a 2^-63 event).
"""

from __future__ import annotations

import hashlib

_MASK = (1 << 63) - 1  # torch and vLLM take signed 64-bit seeds

PURPOSES = ("init", "data_order", "rollout", "eval", "parity", "sft", "synthesis", "difficulty")


def derive_seed(seed: int, purpose: str, *indices: int) -> int:
    """A 63-bit seed for stream (seed, purpose, *indices); ValueError for an unknown purpose."""
    if purpose not in PURPOSES and purpose != "sample":
        raise ValueError(f"unknown seed purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    text = ":".join([str(int(seed)), purpose, *(str(int(i)) for i in indices)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & _MASK


def prompt_seeds(seed: int, purpose: str, step: int, count: int, first: int = 0) -> list[int]:
    """Seeds of prompts first .. first+count-1 of one step (or eval round) of a stream."""
    return [derive_seed(seed, purpose, step, first + p) for p in range(count)]


def sample_seed(prompt_seed: int, sample: int) -> int:
    """The seed of sample `sample` of a prompt whose stream is `prompt_seed` (used inside the engines)."""
    return derive_seed(prompt_seed, "sample", sample)
