"""The builder's outputs: the prompt set (parquet, optional JSONL) and the data card (Markdown, JSON, and the
solve-rate histogram).

The card says, per source: rows in, rows dropped by each stage (and, in a second table, by reason), rows out
and the source's license; rows out per license; what each evaluation set removed; and 20 output rows of every
source, as the model will see them, for a human to read.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlvr.data.schema import write_prompt_file
from rlvr.data.sources import prompt_row

if TYPE_CHECKING:
    from rlvr.data.build import DataBuildConfig

SAMPLES_PER_SOURCE = 20
_SAMPLE_CHARS = 700  # a longer prompt is cut in the card (never in the data)


def describe_output(rows: list[dict[str, Any]], card: dict[str, Any], seed: int) -> None:
    """Fills in the card's output sections: rows per source and per license, and the samples."""
    card["output_rows"] = len(rows)
    card["output_by_source"] = dict(sorted(Counter(r["source"] for r in rows).items()))
    licenses = Counter(json.loads(r["meta"]).get("license") or "not stated in the recipe" for r in rows)
    card["output_by_license"] = dict(licenses.most_common())
    by_source: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    rng = random.Random(seed)
    card["samples"] = {
        name: [_sample(r) for r in sorted(rng.sample(group, min(SAMPLES_PER_SOURCE, len(group))), key=_order)]
        for name, group in sorted(by_source.items())
    }


def _order(row: dict[str, Any]) -> tuple[str, int]:
    head, _, tail = row["id"].rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (row["id"], 0)


def _sample(row: dict[str, Any]) -> dict[str, Any]:
    sample = {"id": row["id"], "prompt": row["prompt"], "answer": row["answer"], "verifier": row["verifier"]}
    if row.get("choices"):
        sample["converted_from"] = f"option {row['letter']} of {len(row['choices'])}"
    return sample


def write_outputs(
    rows: list[dict[str, Any]], out: Path, config: DataBuildConfig, card: dict[str, Any]
) -> None:
    k = config.difficulty.k if config.difficulty.enabled else None
    table = [prompt_row(r, k) for r in rows]
    write_prompt_file(table, out / "prompts.parquet")
    if config.jsonl:
        write_prompt_file(table, out / "prompts.jsonl")
    # every file of the build, in the card itself (earlier stages list theirs, e.g. heldout.parquet)
    jsonl, png = ["prompts.jsonl"] * config.jsonl, ["solve_rate.png"] * ("solve_histogram" in card)
    card["files"] = [
        "prompts.parquet",
        *jsonl,
        *card.get("files", []),
        "data_card.md",
        "data_card.json",
        *png,
    ]
    (out / "data_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    licenses = {s.name: s.license for s in config.sources}
    (out / "data_card.md").write_text(card_markdown(card, licenses), encoding="utf-8")
    if "solve_histogram" in card:
        _histogram(card["solve_histogram"], k or 1, out / "solve_rate.png")


def source_table(card: dict[str, Any], licenses: dict[str, str]) -> list[str]:
    """Per source: rows in, dropped by each stage, out, license (Markdown table lines)."""
    stages = [s["stage"] for s in card["stages"] if any(d["stage"] == s["stage"] for d in card["dropped"])]
    dropped: Counter[tuple[str, str]] = Counter()
    for d in card["dropped"]:
        dropped[(d["source"], d["stage"])] += d["rows"]
    seen = set(card["output_by_source"]) | {d["source"] for d in card["dropped"]}
    sources = list(card["input_rows"]) + sorted(seen - set(card["input_rows"]))  # + synthetic ones
    lines = [
        "| source | in | " + " | ".join(f"−{s}" for s in stages) + " | out | license |",
        "|---|" + "---:|" * (len(stages) + 2) + "---|",
    ]
    total = Counter()
    for name in sources:
        counts = [card["input_rows"].get(name, 0)] + [dropped[(name, s)] for s in stages]
        counts.append(card["output_by_source"].get(name, 0))
        total.update(dict(enumerate(counts)))
        cells = " | ".join(f"{n:,}" for n in counts)
        lines.append(f"| {name} | {cells} | {licenses.get(name, 'as its seed source')} |")
    cells = " | ".join(f"**{total[i]:,}**" for i in range(len(stages) + 2))
    lines.append(f"| **total** | {cells} | |")
    return lines


def card_markdown(card: dict[str, Any], licenses: dict[str, str] | None = None) -> str:
    lines = ["# Data card", "", f"Output: **{card['output_rows']:,}** prompts.", ""]
    if card.get("heldout"):
        by_source = ", ".join(f"{s} {n}" for s, n in card["heldout"]["by_source"].items())
        rows = card["heldout"]["rows"]
        lines += [f"Held out for evaluation: {rows:,} rows in heldout.parquet ({by_source}).", ""]
    lines += ["## Per source", ""]
    lines += source_table(card, licenses or {})
    lines += ["", "## Rows per license", "", "| license | rows |", "|---|---:|"]
    lines += [f"| {name} | {n:,} |" for name, n in card.get("output_by_license", {}).items()]
    lines += ["", "## Rows per stage", "", "| stage | rows out | seconds |", "|---|---:|---:|"]
    lines += [
        f"| {s['stage']} | {s['rows_out']:,} | {card['seconds'].get(s['stage'], '')} |"
        for s in card["stages"]
    ]
    lines += ["", "## Dropped rows by reason", "", "| stage | source | reason | rows |", "|---|---|---|---:|"]
    lines += [f"| {d['stage']} | {d['source']} | {d['reason']} | {d['rows']:,} |" for d in card["dropped"]]
    if card.get("decontamination"):
        lines += ["", "## Decontamination", "", "| evaluation set | prompts | rows dropped | note |"]
        lines += ["|---|---:|---:|---|"]
        for e in card["decontamination"]:
            note = e.get("note") or (f"{e['without_text']} records without text" if e["without_text"] else "")
            lines.append(f"| {e['name']} | {e['prompts'] or 0:,} | {e['rows_dropped']:,} | {note} |")
    lines += _synthesis_lines(card.get("synthesis"))
    lines += _difficulty_lines(card)
    lines += ["", f"Peak RSS {card['peak_rss_mb']} MB; {card['seconds']['total']} s in all.", ""]
    lines += _sample_lines(card.get("samples", {}))
    return "\n".join(lines)


def _synthesis_lines(synthesis: dict[str, Any] | None) -> list[str]:
    """Counts of the synthesis stage and its examples: each written problem, its majority answer, its fate."""
    if not synthesis:
        return []
    lines = ["", "## Synthesis", ""]
    lines.append(
        f"{synthesis['seeds']:,} seeds; {synthesis['written']:,} problems written ({synthesis['empty']:,} "
        f"empty); {synthesis['with_a_majority_answer']:,} with a majority answer; "
        f"{synthesis['passed_the_filter']:,} passed the verifiability filter (then dedupe, decontamination "
        "and difficulty apply, in the table above)."
    )
    lines.append("")
    for i, e in enumerate(synthesis["examples"], start=1):
        problem = " ⏎ ".join(e["problem"][:_SAMPLE_CHARS].splitlines())
        lines.append(f"{i}. {problem}")
        lines.append(f"   **majority** `{e['answer']}` ({e['votes']} of {e['k']} votes) → {e['fate']}")
    return lines


def _difficulty_lines(card: dict[str, Any]) -> list[str]:
    if "solve_histogram" not in card:
        return []
    lines = []
    run = card.get("difficulty_run", {})
    if "seconds" in run:
        full = run["full_set"]
        lines += ["", "## Difficulty run", "", "| | |", "|---|---|"]
        lines += [
            f"| prompts sampled | {run['prompts']:,} (k {run['k']}, ≤ {run['max_new_tokens']} tokens) |",
            f"| attempts | {run['attempts']:,} of {run['attempts_without_early_stop']:,} "
            f"({run['attempts_saved']:.1%} saved by early stopping: {run['early_stop']}) |",
            f"| response tokens | {run['response_tokens']:,} |",
            f"| seconds | {run['seconds']:,} |",
            f"| prompts/s, attempts/s, tokens/s | {run['prompts_per_s']}, {run['attempts_per_s']}, "
            f"{run['tokens_per_s']:,} |",
            f"| the full verified set at this speed | {full['prompts']:,} prompts, {full['attempts']:,} "
            f"attempts, {full['response_tokens']:,} tokens, {full['hours_at_this_speed']:,} hours |",
        ]
    lines += ["", "## Solved of k (before balancing)", "", "| solved | prompts |", "|---|---:|"]
    lines += [f"| {s} | {n:,} |" for s, n in card["solve_histogram"].items()]
    return lines + ["", "## Balance", "", "```", json.dumps(card["balance"], indent=2), "```"]


def _sample_lines(samples: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each source's sample: the prompt as stored (cut at _SAMPLE_CHARS) and its gold."""
    if not samples:
        return []
    lines = ["## Samples", "", f"{SAMPLES_PER_SOURCE} output rows per source (the build's seed).", ""]
    for name, items in samples.items():
        lines += [f"### {name}", ""]
        for i, s in enumerate(items, start=1):
            prompt = s["prompt"] if len(s["prompt"]) <= _SAMPLE_CHARS else s["prompt"][:_SAMPLE_CHARS] + " …"
            origin = f", from multiple choice ({s['converted_from']})" if s.get("converted_from") else ""
            lines.append(f"{i}. `{s['id']}` — {' ⏎ '.join(prompt.splitlines())}")
            lines.append(f"   **gold** `{s['answer']}` ({s['verifier']}{origin})")
        lines.append("")
    return lines


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
