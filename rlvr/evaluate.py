"""`rlvr eval`: pass@1, pass@k and maj@k of a model on a prompt set, through the `Sampler`.

k samples per prompt at the given temperature (1.0 by default); pass@1 is the mean fraction correct and pass@k
uses the unbiased estimator of Chen et al. (2021): 1 − C(n − c, k) / C(n, k) per prompt, averaged. maj@k
(self-consistency, Wang et al. 2022) is the fraction of prompts whose most frequent answer among their k
samples is correct. Temperature 0 is greedy decoding: every sample would be the same, so it draws one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr.config import PromptConfig
from rlvr.data.schema import PromptRow
from rlvr.sampler import PromptFormat, Sampler, SamplingSettings, ScoredRollout
from verifiers.extract import UnbalancedBraces, final_section, last_boxed
from verifiers.normalize import normalize_answer


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def vote_answer(scored: ScoredRollout) -> str | None:
    """The answer a sample votes for in maj@k: the answer its verifier extracted (`Result.extracted`), else,
    for a verifier that reports none, the last `\\boxed{}` of the response; normalised the way the verifiers
    compare answers (`normalize_answer`), so `\\dfrac12` and `\\frac{1}{2}` vote together. None: no vote."""
    answer = scored.result.extracted
    if answer is None:
        try:
            answer = last_boxed(final_section(scored.text) or "")  # a box inside <think> is no vote
        except UnbalancedBraces:
            return None
    answer = None if answer is None else normalize_answer(answer)
    return answer or None


def majority_correct(answers: Sequence[str | None], verdicts: Sequence[bool]) -> bool:
    """maj@k of one prompt: whether its most frequent answer is correct. `answers[i]` and `verdicts[i]` are
    sample i's voting answer (None: it does not vote) and correctness. A tie goes to the answer seen first;
    the answer's verdict is that of its first sample. No votes at all counts as wrong."""
    if len(answers) != len(verdicts):
        raise ValueError(f"{len(answers)} answers but {len(verdicts)} verdicts")
    votes: dict[str, int] = {}
    first: dict[str, bool] = {}
    for answer, verdict in zip(answers, verdicts, strict=True):
        if answer is not None:
            votes[answer] = votes.get(answer, 0) + 1
            first.setdefault(answer, bool(verdict))
    if not votes:
        return False
    return first[max(votes, key=votes.__getitem__)]  # max keeps the first of equals: insertion order


@dataclass
class _Tally:
    """Per prompt: correct samples and the majority vote's verdict; statuses over all samples."""

    correct: list[int] = field(default_factory=list)
    majority: list[bool] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, count: int, scored: Sequence[ScoredRollout]) -> None:
        samples: list[list[ScoredRollout]] = [[] for _ in range(count)]
        for s in scored:
            samples[s.rollout.prompt_index].append(s)
            self.statuses[s.result.status] = self.statuses.get(s.result.status, 0) + 1
        for group in samples:
            group.sort(key=lambda s: s.rollout.sample_index)
            verdicts = [s.result.correct for s in group]
            self.correct.append(sum(verdicts))
            self.majority.append(majority_correct([vote_answer(s) for s in group], verdicts))


def evaluate(
    rows: Sequence[PromptRow],
    sampler: Sampler,
    k: int,
    max_new_tokens: int,
    seeds: Sequence[int] | None = None,
    batch_prompts: int = 64,
    progress: bool = True,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Samples k completions per prompt at `temperature` (0: greedy, one sample per prompt whatever k is),
    verifies each with its row's verifier, and returns pass@1, pass@k, maj@k, per-status and per-source
    counts. `seeds` has one stream seed per row. ValueError on no rows or a negative temperature."""
    from tqdm import tqdm

    if not rows:
        raise ValueError("nothing to evaluate: no prompt rows")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy decoding), got {temperature}")
    k = 1 if temperature == 0 else k
    tally = _Tally()
    settings = SamplingSettings(n=k, max_new_tokens=max_new_tokens, temperature=temperature)
    start = time.perf_counter()
    bar = tqdm(total=len(rows), desc="eval", unit="prompt", disable=not progress)
    for first in range(0, len(rows), batch_prompts):
        chunk = list(rows[first : first + batch_prompts])
        chunk_seeds = None if seeds is None else list(seeds[first : first + batch_prompts])
        tally.add(len(chunk), sampler.sample(chunk, settings, chunk_seeds))
        bar.update(len(chunk))
    bar.close()
    correct = tally.correct
    return {
        "prompts": len(rows),
        "k": k,
        "temperature": float(temperature),
        "pass@1": sum(c / k for c in correct) / len(rows),
        f"pass@{k}": sum(pass_at_k(k, c, k) for c in correct) / len(rows),
        f"maj@{k}": sum(tally.majority) / len(rows),
        "solved_none": sum(c == 0 for c in correct) / len(rows),
        "statuses": tally.statuses,
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
