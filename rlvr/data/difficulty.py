"""Dataset builder, stage 6: difficulty by pass@k with the current model, and balancing.

`estimate` walks the rows in fixed chunks; each finished chunk is written to
`<work>/difficulty/chunk_NNNNN.jsonl` (id, solved out of k) before the next starts, so an interrupted build
resumes where it stopped and never redoes a chunk. `balance` then drops the simple items and samples the
target size so that the fraction solved in none of the k attempts is the target, stratified by source and
deterministic given the seed.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SolveFn = Callable[[list[dict[str, Any]]], list[int]]  # rows -> solved count (0..k) per row


def estimate(
    rows: Sequence[dict[str, Any]], solve: SolveFn, k: int, work_dir: Path, chunk_size: int = 256
) -> tuple[dict[str, int], dict[str, int]]:
    """{id: solved of k} for every row, and {"chunks_done", "chunks_skipped"} for the data card."""
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
    solved: dict[str, int] = {}
    counts = {"chunks_done": 0, "chunks_skipped": 0}
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        path = folder / f"chunk_{start // chunk_size:05d}.jsonl"
        if path.exists():
            for line in path.read_text().splitlines():
                item = json.loads(line)
                solved[item["id"]] = item["solved"]
            counts["chunks_skipped"] += 1
            continue
        results = solve(list(chunk))
        partial = path.with_suffix(".partial")
        partial.write_text(
            "".join(
                json.dumps({"id": r["id"], "solved": int(s)}) + "\n"
                for r, s in zip(chunk, results, strict=True)
            )
        )
        partial.rename(path)  # a chunk file exists only when complete
        solved.update({r["id"]: int(s) for r, s in zip(chunk, results, strict=True)})
        counts["chunks_done"] += 1
    return solved, counts


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
