"""The builder's outputs: the prompt set (parquet, optional JSONL) and the data card (Markdown, JSON, and the
solve-rate histogram)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlvr.data.schema import write_prompt_file
from rlvr.data.sources import prompt_row

if TYPE_CHECKING:
    from rlvr.data.build import DataBuildConfig


def write_outputs(
    rows: list[dict[str, Any]], out: Path, config: DataBuildConfig, card: dict[str, Any]
) -> None:
    k = config.difficulty.k if config.difficulty.enabled else None
    table = [prompt_row(r, k) for r in rows]
    write_prompt_file(table, out / "prompts.parquet")
    if config.jsonl:
        write_prompt_file(table, out / "prompts.jsonl")
    (out / "data_card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "data_card.md").write_text(card_markdown(card))
    if "solve_histogram" in card:
        _histogram(card["solve_histogram"], k or 1, out / "solve_rate.png")


def card_markdown(card: dict[str, Any]) -> str:
    lines = ["# Data card", "", f"Output: **{card['output_rows']}** prompts.", "", "## Rows per stage", ""]
    lines += ["| stage | rows out | seconds |", "|---|---|---|"]
    lines += [
        f"| {s['stage']} | {s['rows_out']} | {card['seconds'].get(s['stage'], '')} |" for s in card["stages"]
    ]
    lines += ["", "## Input rows per source", "", "| source | rows |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in card["input_rows"].items()]
    lines += ["", "## Dropped rows", "", "| stage | source | reason | rows |", "|---|---|---|---|"]
    lines += [f"| {d['stage']} | {d['source']} | {d['reason']} | {d['rows']} |" for d in card["dropped"]]
    if "solve_histogram" in card:
        lines += ["", "## Solved of k (before balancing)", "", "| solved | prompts |", "|---|---|"]
        lines += [f"| {s} | {n} |" for s, n in card["solve_histogram"].items()]
        lines += ["", "## Balance", "", "```", json.dumps(card["balance"], indent=2), "```"]
    lines += ["", "## Output per source", "", "| source | rows |", "|---|---|"]
    lines += [f"| {name} | {n} |" for name, n in card["output_by_source"].items()]
    lines += ["", f"Peak RSS {card['peak_rss_mb']} MB; {card['seconds']['total']} s in all.", ""]
    return "\n".join(lines)


def _histogram(histogram: dict[Any, int], k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    keys = sorted(int(x) for x in histogram)
    ax.bar(keys, [histogram[x] if x in histogram else histogram[str(x)] for x in keys])
    ax.set_xlabel(f"solved of {k}")
    ax.set_ylabel("prompts")
    ax.set_title("difficulty before balancing")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
