"""`rlvr eval`: pass@1 and pass@k of a model on a prompt set, through the `Sampler`.

k samples per prompt at temperature 1.0; pass@1 is the mean fraction correct and pass@k uses the unbiased
estimator of Chen et al. (2021): 1 − C(n − c, k) / C(n, k) per prompt, averaged.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlvr.config import PromptConfig
from rlvr.data.schema import PromptRow
from rlvr.sampler import PromptFormat, Sampler, SamplingSettings


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def evaluate(
    rows: Sequence[PromptRow],
    sampler: Sampler,
    k: int,
    max_new_tokens: int,
    seeds: Sequence[int] | None = None,
    batch_prompts: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Samples k completions per prompt at T = 1, verifies each with its row's verifier, and returns pass@1,
    pass@k, per-status and per-source counts. `seeds` has one stream seed per row. ValueError on no rows."""
    from tqdm import tqdm

    if not rows:
        raise ValueError("nothing to evaluate: no prompt rows")
    correct: list[int] = []
    statuses: dict[str, int] = {}
    settings = SamplingSettings(n=k, max_new_tokens=max_new_tokens)
    start = time.perf_counter()
    bar = tqdm(total=len(rows), desc="eval", unit="prompt", disable=not progress)
    for first in range(0, len(rows), batch_prompts):
        chunk = list(rows[first : first + batch_prompts])
        chunk_seeds = None if seeds is None else list(seeds[first : first + batch_prompts])
        per_prompt = [0] * len(chunk)
        for s in sampler.sample(chunk, settings, chunk_seeds):
            per_prompt[s.rollout.prompt_index] += int(s.result.correct)
            statuses[s.result.status] = statuses.get(s.result.status, 0) + 1
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
        "by_source": _by_source(rows, correct, k),
        "seconds": time.perf_counter() - start,
    }


def _by_source(rows: Sequence[PromptRow], correct: list[int], k: int) -> dict[str, dict[str, float]]:
    groups: dict[str, list[int]] = {}
    for row, c in zip(rows, correct, strict=True):
        groups.setdefault(row.source or "unknown", []).append(c)
    return {
        name: {"prompts": len(cs), "pass@1": sum(cs) / (k * len(cs))} for name, cs in sorted(groups.items())
    }


def write_result(result: dict[str, Any], path: Path, **extra: Any) -> None:
    """Appends one evaluation as a JSON line (the format `rlvr plot` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({**extra, **result}) + "\n")


@contextmanager
def local_sampler(
    checkpoint: Path,
    engine: str = "vllm",
    verifier: str = "math",
    verifier_workers: int = 1,
    verifier_options: Mapping[str, Any] | None = None,
    prompt: PromptConfig | None = None,
) -> Iterator[Sampler]:
    """A `Sampler` in this process for `rlvr eval`: the checkpoint in a rollout engine (vLLM in-process or
    the torch engine) and a `VerifierRouter` (rows' own verifiers, `verifier` for rows naming none)."""
    from rlvr.model.megrez2 import Megrez2ForCausalLM
    from rlvr.tokenizer import load_tokenizer
    from rollout.worker import build_engine
    from verifiers.routing import VerifierRouter

    tokenizer = load_tokenizer(checkpoint)
    model = Megrez2ForCausalLM.from_pretrained(checkpoint)
    stops, pad = tokenizer.stop_token_ids, tokenizer.pad_token_id
    rollout = build_engine(engine, model.config, model.state_dict(), stops, pad)
    del model
    prompt_format = PromptFormat(tokenizer, prompt)
    with VerifierRouter(verifier, verifier_workers, default_kwargs=verifier_options) as router:
        yield Sampler(prompt_format, rollout.generate, router.verify_batch, default_verifier=verifier)
