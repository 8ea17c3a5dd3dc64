"""Dataset builder, stage 6: difficulty by pass@k with the current model, and balancing.

`estimate` walks the rows in fixed chunks; each finished chunk is written to
`<work>/difficulty/chunk_NNNNN.jsonl` (id, solved, attempts made, response tokens) before the next starts, so
an interrupted build resumes where it stopped and never redoes a chunk. `balance` then drops the simple items
and samples the target size so that the fraction solved in none of the k attempts is the target, stratified
by source and deterministic given the seed.

Balancing needs only each prompt's class — never solved, solved but not simple, simple (solved more often
than `max_solve_rate`) — not its exact count. `decided` says when the attempts so far fix the class, so the
model can stop sampling a prompt early: at the first right attempt when nothing is too simple
(`max_solve_rate` 1), else at the first right attempt once one is also wrong. A never-solved prompt always
takes all k attempts.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# rows -> per row, solved of k (an int), or {"solved", "attempts", "tokens"} when sampling stopped early
SolveFn = Callable[[list[dict[str, Any]]], list[Any]]
StopFn = Callable[[int, int], bool]  # (right, wrong) attempts so far -> the prompt's class is known


def decided(k: int, max_solve_rate: float) -> StopFn:
    """When (right, wrong) attempts fix a prompt's class for `balance`: at least one right, and enough wrong
    that it cannot be simple (solved more than `max_solve_rate` of k)."""
    most = math.floor(max_solve_rate * k + 1e-9)  # the most right answers a prompt kept as not simple has
    wrong_needed = 0 if most >= k else k - most
    return lambda right, wrong: right >= 1 and wrong >= wrong_needed


def _outcome(result: Any, k: int) -> dict[str, Any]:
    """A solver's answer for one row (a count of k, or a dict after early stopping) as one record."""
    if not isinstance(result, dict):
        return {"solved": int(result), "attempts": k, "tokens": None}
    attempts = int(result.get("attempts", k))  # chunks written before early stopping hold only `solved`
    outcome = {"solved": int(result["solved"]), "attempts": attempts, "tokens": result.get("tokens")}
    return outcome | ({"skipped": result["skipped"]} if result.get("skipped") else {})


def estimate(
    rows: Sequence[dict[str, Any]], solve: SolveFn, k: int, work_dir: Path, chunk_size: int = 256
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """{id: {solved, attempts, tokens}} for every row, and for the data card the chunks done and skipped and
    the seconds, prompts, attempts and tokens of the chunks sampled in this run (their speed)."""
    folder = work_dir / "difficulty"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    spec = {"k": k, "chunk_size": chunk_size, "rows": len(rows), "first_id": rows[0]["id"] if rows else None}
    if manifest.exists() and json.loads(manifest.read_text()) != spec:
        raise ValueError(
            f"{folder} holds chunks of a different build ({manifest.read_text().strip()} vs {spec}); "
            "delete it or use another output folder"
        )
    manifest.write_text(json.dumps(spec))
    outcomes: dict[str, dict[str, Any]] = {}
    counts: dict[str, Any] = {"chunks_done": 0, "chunks_skipped": 0, "seconds": 0.0, "prompts": 0}
    counts |= {"attempts": 0, "tokens": 0}
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        path = folder / f"chunk_{start // chunk_size:05d}.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                item = json.loads(line)
                outcomes[item.pop("id")] = _outcome(item, k)
            counts["chunks_skipped"] += 1
            continue
        began = time.perf_counter()
        results = [_outcome(x, k) for x in solve(list(chunk))]
        counts["seconds"] += time.perf_counter() - began
        partial = path.with_suffix(".partial")
        lines = (json.dumps({"id": r["id"], **o}) + "\n" for r, o in zip(chunk, results, strict=True))
        partial.write_text("".join(lines))
        partial.rename(path)  # a chunk file exists only when complete
        outcomes.update({r["id"]: o for r, o in zip(chunk, results, strict=True)})
        counts["chunks_done"] += 1
        counts["prompts"] += sum(1 for o in results if not o.get("skipped"))
        counts["attempts"] += sum(o["attempts"] for o in results)
        counts["tokens"] += sum(o["tokens"] or 0 for o in results)
        solved = sum(1 for o in results if o["solved"])
        print(f"difficulty: chunk {path.name} ({len(chunk)} rows, {solved} solved at least once)", flush=True)
    return outcomes, counts


def run_report(counts: dict[str, Any], k: int, full_size: int) -> dict[str, Any]:
    """The speed of the chunks sampled in this run, the attempts early stopping saved, and the cost of the
    whole verified set at that speed (`full_size` prompts, same attempts and tokens per prompt)."""
    prompts, seconds = counts["prompts"], counts["seconds"]
    if not prompts or not seconds:
        return {"prompts": prompts, "note": "no chunk was sampled in this run (all resumed)"}
    report = {
        "prompts": prompts,
        "seconds": round(seconds, 1),
        "attempts": counts["attempts"],
        "attempts_without_early_stop": prompts * k,
        "attempts_saved": round(1 - counts["attempts"] / (prompts * k), 4),
        "response_tokens": counts["tokens"],
        "prompts_per_s": round(prompts / seconds, 4),
        "attempts_per_s": round(counts["attempts"] / seconds, 3),
        "tokens_per_s": round(counts["tokens"] / seconds, 1),
    }
    report["full_set"] = {
        "prompts": full_size,
        "attempts": round(counts["attempts"] / prompts * full_size),
        "response_tokens": round(counts["tokens"] / prompts * full_size),
        "hours_at_this_speed": round(full_size / (prompts / seconds) / 3600, 1),
    }
    return report


def _quota(groups: dict[str, list[Any]], total: int) -> dict[str, int]:
    """Split `total` over groups in proportion to their sizes (largest remainder), capped by each size."""
    size = sum(len(g) for g in groups.values())
    if size == 0 or total <= 0:
        return {name: 0 for name in groups}
    exact = {name: total * len(g) / size for name, g in groups.items()}
    quota = {name: min(len(groups[name]), math.floor(x)) for name, x in exact.items()}
    for name in sorted(groups, key=lambda n: exact[n] - math.floor(exact[n]), reverse=True):
        if sum(quota.values()) >= total:
            break
        if quota[name] < len(groups[name]):
            quota[name] += 1
    return quota


def stratified_sample(rows: Sequence[dict[str, Any]], count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` rows, each source in proportion to its size, in input order; deterministic given the seed."""
    chosen = {id(r) for r in _stratified(list(rows), count, random.Random(seed))}
    return [r for r in rows if id(r) in chosen]


def _stratified(rows: list[dict[str, Any]], count: int, rng: random.Random) -> list[dict[str, Any]]:
    by_source: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    chosen = []
    for name, n in sorted(_quota(by_source, count).items()):
        chosen += rng.sample(by_source[name], n)
    return chosen


def balance(
    rows: Sequence[dict[str, Any]],
    k: int,
    target_size: int,
    unsolved_fraction: float = 0.5,
    max_solve_rate: float = 0.99,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows carry `solved` (of k). Simple items (solve rate above `max_solve_rate`, so by default solved in
    all k) are excluded; of the rest, `unsolved_fraction` of the output is solved 0/k. When either pool is too
    small the output shrinks so that the fraction still holds. Returns the rows (input order) and a report."""
    kept = [r for r in rows if r["solved"] / k <= max_solve_rate]
    unsolved = [r for r in kept if r["solved"] == 0]
    partial = [r for r in kept if r["solved"] > 0]
    total = target_size
    if unsolved_fraction > 0:
        total = min(total, math.floor(len(unsolved) / unsolved_fraction))
    if unsolved_fraction < 1:
        total = min(total, math.floor(len(partial) / (1 - unsolved_fraction)))
    n_unsolved = round(total * unsolved_fraction)
    rng = random.Random(seed)
    chosen = _stratified(unsolved, n_unsolved, rng) + _stratified(partial, total - n_unsolved, rng)
    order = {r["id"]: i for i, r in enumerate(rows)}
    chosen.sort(key=lambda r: order[r["id"]])
    report = {
        "excluded_simple": len(rows) - len(kept),
        "pool_unsolved": len(unsolved),
        "pool_partially_solved": len(partial),
        "target_size": target_size,
        "output_size": len(chosen),
        "unsolved_fraction": (sum(r["solved"] == 0 for r in chosen) / len(chosen)) if chosen else None,
        "short_of_target": len(chosen) < target_size,
    }
    return chosen, report
