"""The SFT set's data card as Markdown (`card.md`), from the card dict `sft_set.describe` makes (`card.json`).

Per source: kind, license, rows read, dropped (by reason in a second table, with examples: a malformed row
with its line), problems kept; what each evaluation set removed; character lengths of the conversations
(no tokenizer: characters); one sample conversation per source.
"""

from __future__ import annotations

import json
from typing import Any

SAMPLE_CHARS = 600  # a longer message is cut in the card (never in the data)


def card_markdown(card: dict[str, Any]) -> str:
    parts = [
        "# SFT data card\n",
        f"{card['conversations']} conversations, {card['messages']} messages in `{card['output_dir']}/"
        f"{card['files'][0]}` (TRL conversational format, no system turn); seed {card['seed']}. Every user "
        f"turn that asks a problem ends with the instruction `{card['instruction']}`.\n",
        _sources_table(card),
        _drops_table(card),
        _decontamination_table(card),
        _lengths_table(card),
        _samples(card),
    ]
    return "\n".join(parts)


def _sources_table(card: dict[str, Any]) -> str:
    lines = [
        "## Sources\n",
        "| source | kind | license | read | dropped | problems kept | of them in two-problem conversations |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, s in card["sources"].items():
        dropped = sum(s["dropped"].values())
        lines.append(
            f"| {name} | {s['kind']} | {s['license']} | {s['read']} | {dropped} | {s['kept_problems']} "
            f"| {s['in_two_problem_conversations']} |"
        )
    pairs = card["two_problem_conversations"]
    licenses = ", ".join(f"{name}: {n}" for name, n in card["problems_by_license"].items())
    lines += [
        "",
        f"Two-problem conversations: {pairs['made']} made ({pairs['asked']} asked). Problems by license: "
        f"{licenses}.\n",
    ]
    return "\n".join(lines)


def _drops_table(card: dict[str, Any]) -> str:
    lines = [
        "## Dropped rows by reason\n",
        "`over_limit`: past the source's `limit` in the seeded random order; `duplicate`: its problem text "
        "(normalised) is already in the set; `contaminated:<set>`: overlaps that evaluation set.\n",
        "| source | reason | rows | examples |",
        "| --- | --- | ---: | --- |",
    ]
    for name, s in card["sources"].items():
        for reason, count in s["dropped"].items():
            examples = "; ".join(s["drop_examples"].get(reason, []))
            lines.append(f"| {name} | {reason} | {count} | {_cell(examples, 200)} |")
    return "\n".join(lines) + "\n"


def _decontamination_table(card: dict[str, Any]) -> str:
    lines = ["## Decontamination\n", "| set | path | prompts | rows dropped |", "| --- | --- | ---: | ---: |"]
    for entry in card["decontamination"]:
        prompts = entry["prompts"] if entry["prompts"] is not None else entry.get("note", "")
        lines.append(f"| {entry['name']} | `{entry['path']}` | {prompts} | {entry.get('rows_dropped', 0)} |")
    if not card["decontamination"]:
        lines.append("| (none) | | | |")
    return "\n".join(lines) + "\n"


def _lengths_table(card: dict[str, Any]) -> str:
    lines = [
        "## Lengths (characters, all messages of a conversation; no chat template)\n",
        "| source | conversations | messages | min | median | mean | p90 | max | total | assistant median |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    groups = {**card["conversations_by_source"], "all": {"chars": card["chars"]}}
    for name, group in groups.items():
        c = group["chars"]
        if not c["count"]:
            continue
        assistant = group.get("assistant_chars", {}).get("median", "")
        messages = group.get("messages", card["messages"])
        lines.append(
            f"| {name} | {c['count']} | {messages} | {c['min']} | {c['median']} | {c['mean']} | {c['p90']} "
            f"| {c['max']} | {c['total']} | {assistant} |"
        )
    return "\n".join(lines) + "\n"


def _samples(card: dict[str, Any]) -> str:
    lines = ["## One conversation of each source\n"]
    for name, group in card["conversations_by_source"].items():
        sample = group["sample"]
        lines.append(f"### {name}: `{sample['id']}` (answer `{sample['answer']}`)\n")
        for message in sample["messages"]:
            text = message["content"]
            text = text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + " [...]"
            lines.append(f"**{message['role']}**:\n\n```text\n{text}\n```\n")
    return "\n".join(lines)


def _cell(text: str, limit: int) -> str:
    """Text for one Markdown table cell: one line, `|` escaped, at most `limit` characters."""
    flat = json.dumps(text, ensure_ascii=False)[1:-1].replace("|", "\\|")
    return flat if len(flat) <= limit else flat[:limit] + " [...]"
