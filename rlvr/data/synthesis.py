"""Dataset builder, stage 5 (optional): new problems written by the model from seed items.

For each seed the model writes `per_seed` new problems from a prompt template; each new problem is then solved
k times independently, and accepted only if a strict majority of the k final answers agree (after answer
normalisation) and that answer passes the verifiability filter. The accepted problems join the candidates
before dedupe and decontamination, so they are checked like every other row. Every rejected problem is
counted with its reason.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from rlvr.data.filters import verifiability_reason
from rlvr.data.sources import candidate
from verifiers.extract import UnbalancedBraces, final_answer, final_section
from verifiers.pool import VerifierPool

# texts -> n sampled completions per text
SampleFn = Callable[[list[str], int], list[list[str]]]

DEFAULT_TEMPLATE = (
    "Here is a math problem:\n{problem}\n\nWrite one new problem of the same kind and difficulty, with "
    "different numbers. Give only the problem.\nNew problem:"
)
SOLVE_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


class VoteJudge:
    """Whether two final answers are one vote, asked of the seed's verifier in a `VerifierPool` worker (one
    pool per verifier, started on first use), under the pool's limits: the answers are model output, and a
    plug-in that hangs or crashes on one costs that comparison ("timeout"/"error" count as different
    answers), never the build. A context manager; `close()` stops the workers."""

    def __init__(self, soft_timeout_s: float = 5.0) -> None:
        self.soft_timeout_s = soft_timeout_s
        self._pools: dict[str, Any] = {}

    def same(self, verifier: str, answer: str, representative: str) -> bool:
        if verifier not in self._pools:
            self._pools[verifier] = VerifierPool(verifier, num_workers=1, soft_timeout_s=self.soft_timeout_s)
        return self._pools[verifier].verify(f"\\boxed{{{answer}}}", representative).correct

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def __enter__(self) -> VoteJudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def majority_answer(solutions: list[str], same: Callable[[str, str], bool]) -> tuple[str | None, int]:
    """The final answer a strict majority of the solutions agree on, and its votes. An answer joins a group
    when `same(answer, member)` holds for every member (the seed's verifier accepts it as each of them:
    `12` and `12.0`, or `1/2` and `\\frac12`, are one vote; `VoteJudge.same`), so a loose equality cannot
    chain different answers into one group (`1011_2` and `1011_3` both match `1011`, not each other)."""
    clusters: list[list[str]] = []  # the answers of each group, its first one its representative
    for text in solutions:
        try:
            section = final_section(text)  # a reasoning model's draft inside <think> is no vote
            answer = final_answer(section) if section is not None else None
        except UnbalancedBraces:
            answer = None
        if not answer:
            continue
        answer = answer.strip()
        for cluster in clusters:
            if all(same(answer, member) for member in cluster):
                cluster.append(answer)
                break
        else:
            clusters.append([answer])
    if not clusters:
        return None, 0
    group = max(clusters, key=len)
    return (group[0], len(group)) if len(group) * 2 > len(solutions) else (None, len(group))


def synthesize(
    seeds: list[dict[str, Any]],
    sample: SampleFn,
    k: int = 4,
    per_seed: int = 1,
    template: str = DEFAULT_TEMPLATE,
) -> tuple[list[dict[str, Any]], Counter[str], list[dict[str, Any]]]:
    """New candidate rows from `seeds` (candidates of stage 1-3), the reasons for every rejection, and what
    became of each written problem (for the data card: seed, problem, majority answer and votes, fate)."""
    written = sample([template.format(problem=s["prompt"]) for s in seeds], per_seed)
    problems = [(seed, text.strip()) for seed, texts in zip(seeds, written, strict=True) for text in texts]
    rejected: Counter[str] = Counter()
    usable = [(seed, text) for seed, text in problems if text]
    rejected["synthesis_empty"] += len(problems) - len(usable)
    solutions = sample([SOLVE_TEMPLATE.format(problem=text) for _, text in usable], k) if usable else []
    rows, fates = [], []
    with VoteJudge() as judge:
        votes_of = [
            majority_answer(sols, partial(judge.same, seed["verifier"]))
            for (seed, _), sols in zip(usable, solutions, strict=True)
        ]
    for i, ((seed, text), sols, (answer, votes)) in enumerate(zip(usable, solutions, votes_of, strict=True)):
        reason = "no_majority" if answer is None else verifiability_reason(answer, text, seed["verifier"])
        fates.append({"seed_id": seed["id"], "problem": text, "answer": answer, "votes": votes, "k": k})
        fates[-1]["fate"] = f"synthesis_{reason}" if reason else "kept"
        if reason:
            rejected[f"synthesis_{reason}"] += 1
            continue
        meta = {"seed_id": seed["id"], "solutions": sols, "k": k, "license": _seed_license(seed)}
        source = f"synthetic_{seed['source']}"
        rows.append(candidate(source, i, prompt=text, answer=answer, verifier=seed["verifier"], meta=meta))
    return rows, rejected, fates


def _seed_license(seed: dict[str, Any]) -> str:
    """A written problem is derived from its seed: it carries the seed's license."""
    return json.loads(seed.get("meta") or "{}").get("license", "")
