"""`rlvr eval`: pass@1 and pass@k of a model on a prompt set, with the rollout engine and the verifiers.

k samples per prompt at temperature 1.0; pass@1 is the mean fraction correct and pass@k uses the unbiased
estimator of Chen et al. (2021): 1 − C(n − c, k) / C(n, k) per prompt, averaged.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlvr.data.schema import PromptRow
from rollout.types import Rollout
from verifiers.base import Result

Generate = Callable[[list[list[int]], int, int, float, int], list[Rollout]]
Verify = Callable[[list[tuple[str, str, dict[str, Any] | None]]], list[Result]]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def evaluate(
    rows: list[PromptRow],
    tokenizer: Any,
    generate: Generate,
    verify: Verify,
    k: int,
    max_new_tokens: int,
    seed: int = 0,
    batch_prompts: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Samples k completions per prompt, verifies them, and returns pass@1, pass@k and per-status counts."""
    from tqdm import tqdm

    correct: list[int] = []
    statuses: dict[str, int] = {}
    start = time.perf_counter()
    bar = tqdm(total=len(rows), desc="eval", unit="prompt", disable=not progress)
    for first in range(0, len(rows), batch_prompts):
        chunk = rows[first : first + batch_prompts]
        rollouts = generate([tokenizer.encode(r.prompt) for r in chunk], k, max_new_tokens, 1.0, seed + first)
        items = [
            (tokenizer.decode(r.response_ids), chunk[r.prompt_index].answer, chunk[r.prompt_index].meta)
            for r in rollouts
        ]
        results = verify(items)
        per_prompt = [0] * len(chunk)
        for rollout, result in zip(rollouts, results, strict=True):
            per_prompt[rollout.prompt_index] += int(result.correct)
            statuses[result.status] = statuses.get(result.status, 0) + 1
        correct += per_prompt
        bar.update(len(chunk))
    bar.close()
    return {
        "prompts": len(rows),
        "k": k,
        "pass@1": sum(c / k for c in correct) / len(rows),
        f"pass@{k}": sum(pass_at_k(k, c, k) for c in correct) / len(rows),
        "solved_none": sum(c == 0 for c in correct) / len(rows),
        "statuses": statuses,
        "seconds": time.perf_counter() - start,
    }


def write_result(result: dict[str, Any], path: Path, **extra: Any) -> None:
    """Appends one evaluation as a JSON line (the format `rlvr plot` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({**extra, **result}) + "\n")
