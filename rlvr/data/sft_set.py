"""`rlvr data sft RECIPE`: worked solutions as chat, the SFT set (`sft.jsonl` in TRL's conversational format).

    per source: read (one function per source kind) -> decontaminate -> length caps -> shuffle,
        deduplicate, cap -> two-problem conversations -> shuffle -> sft.jsonl, card.md, card.json

One JSON object a line: `{"messages": [{"role": "user", ...}, {"role": "assistant", ...}, ...], "source",
"id", "question", "answer"}`; no system turn (the model's chat template adds its own). The first user turn
of a single-problem conversation is exactly the RL prompt: the problem as `rlvr data build`'s adapter makes
it from the same source row (`sources.py`), a newline, the instruction (`PromptFormat.text`). The assistant
turns are worked solutions ending in `\\boxed{answer}` (`worked.py`):

- `gsm8k`: the solution, calculator annotations removed, `#### N` as `The answer is \\boxed{N}.`;
- `mawps`, `asdiv`: the equation worked out one operation a line; a row whose equation does not evaluate
  to its gold is dropped (`equation_mismatch`), one that is not plain arithmetic too (`equation_unreadable`);
- `math`: MATH solutions as written, of the recipe's `levels`;
- `mathdial`: real tutoring dialogues, the teacher as the assistant: the first user turn holds the problem
  and the student's incorrect solution, the teacher's move tags are removed, and the teacher closes with the
  reference solution and its boxed answer.

Two-problem conversations join two single-problem ones (the second user turn is the second problem with the
same instruction). A source's `limit` caps its problems, those in two-problem conversations included, so no
problem is in the set twice. Every row that leaves is counted by source and reason in the card.
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from rlvr.config import RecipeError, Section
from rlvr.data import dedup, sources
from rlvr.data.fields import NotANumber, joined_text, number_answer, text_field
from rlvr.data.schema import file_records
from rlvr.data.sft_card import card_markdown
from rlvr.data.worked import (
    EquationMismatch,
    Unreadable,
    append_turn,
    asdiv_expression,
    equation_solution,
    final_line_split,
    gsm8k_solution,
    mathdial_turns,
    mawps_expression,
)
from verifiers.extract import last_boxed

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
TWO_PROBLEMS = "two_problems"  # the `source` of a two-problem conversation
OUTPUT = "sft.jsonl"
EXAMPLES_PER_REASON = 3  # drop examples each source keeps for the card
Kind = Literal["gsm8k", "mawps", "asdiv", "math", "mathdial"]


class SFTSourceConfig(Section):
    name: str = Field(description="source name; prefixes conversation ids and labels the data card")
    kind: Kind = Field(description="how a record becomes a conversation (module docstring)")
    path: str = Field(description="the source file as published (jsonl/json, .gz allowed, or parquet)")
    license: str = Field(description="the source's license as its publisher states it; summed in the card")
    limit: int | None = Field(None, ge=1, description="at most this many problems, drawn at random (seed)")
    max_solution_chars: int | None = Field(
        None, ge=1, description="drop rows whose assistant turns hold more characters (solution_too_long)"
    )
    max_problem_chars: int | None = Field(
        None, ge=1, description="drop rows whose (first) problem has more characters (problem_too_long)"
    )
    levels: list[int] | None = Field(None, description="kind math: keep only these MATH levels (1-5)")

    @model_validator(mode="after")
    def _levels_need_math(self) -> SFTSourceConfig:
        if self.levels is not None and self.kind != "math":
            raise ValueError(f"levels applies to kind math only (this one is {self.kind})")
        return self


class SFTEvalSetConfig(Section):
    path: str = Field(description="prompts to decontaminate against (jsonl/json/parquet, .gz allowed)")
    field: str | list[str] = Field(
        "question", description="the field holding the prompt; a list: the first of them a record has"
    )
    join: bool = Field(
        False, description="the fields of `field` joined by a newline, as the RL builder joins SVAMP's"
    )
    name: str | None = Field(None, description="label in the data card (default: the file name)")
    optional: bool = Field(False, description="a missing file is skipped and noted (else it is an error)")


class SFTDataConfig(Section):
    output_dir: str = Field("data/sft", description="output folder: sft.jsonl, card.md, card.json")
    seed: int = Field(0, description="sampling and shuffling seed")
    instruction: str = Field(
        INSTRUCTION, description="after each problem on a new line: the RL recipe's data.prompt.instruction"
    )
    sources: list[SFTSourceConfig] = Field(min_length=1, description="input datasets")
    two_problem_conversations: int = Field(
        0, ge=0, description="conversations of two problems, made from single-problem ones"
    )
    decontaminate: list[SFTEvalSetConfig] = Field(
        default_factory=list, description="held-out and evaluation sets no problem may overlap"
    )
    contamination_overlap: float = Field(
        0.2, gt=0, le=1, description="share of 13-grams that marks a problem contaminated (dedup.py)"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> SFTDataConfig:
        names = [s.name for s in self.sources]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"source names must be unique; repeated: {', '.join(repeated)}")
        return self


@dataclasses.dataclass
class Conversation:
    id: str
    source: str
    question: str  # the (first) problem's plain text: what deduplication and decontamination compare
    answer: str  # the (first) problem's final answer
    messages: list[dict[str, str]]

    def record(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "source": self.source,
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
        }

    def solution_chars(self) -> int:
        return sum(len(m["content"]) for m in self.messages if m["role"] == "assistant")


class Dropped(Exception):
    """A source row that does not become a conversation, with its reason (counted in the card)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


@dataclasses.dataclass
class Tally:
    """One source's counts for the card: rows read, drops by reason (with a few examples), problems kept."""

    read: int = 0
    dropped: Counter[str] = dataclasses.field(default_factory=Counter)
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    kept: int = 0

    def drop(self, reason: str, example: str = "") -> None:
        self.dropped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if example and len(shown) < EXAMPLES_PER_REASON:
            shown.append(example)


def user_text(problem: str, instruction: str) -> str:
    """The user turn of a problem: `rlvr.sampler.PromptFormat.text` of a row with this prompt (written out
    here because the sampler imports torch; the tests check both agree)."""
    return f"{problem}\n{instruction}" if instruction else problem


# ---------------------------------------------------------------- one function per source kind

KindFn = Callable[[dict[str, Any], int, SFTSourceConfig, str], Conversation]
# the field mappings of recipes/smollm2-data.yaml: the same problem text as the RL prompt set
_MAWPS = sources.generic({"question_field": "original_text", "answer_field": "ans", "answer_type": "number"})
_ASDIV = sources.generic(
    {"question_field": ["Body", "Question"], "answer_field": "Answer", "answer_type": "number"}
)


def _adapted(
    record: dict[str, Any], index: int, source: SFTSourceConfig, adapter: Callable[..., Any]
) -> dict[str, Any]:
    """The RL builder's candidate of the record (its prompt, gold and meta); Dropped where it drops it."""
    row = sources.adapt_record(record, index, source.name, adapter, "math", source.license)
    if row["drop"].startswith("malformed"):
        raise Dropped("malformed", row["drop"].removeprefix("malformed: "))
    if row["drop"]:
        raise Dropped(row["drop"])
    return {**row, "meta": json.loads(row["meta"])}


def _single(row: dict[str, Any], solution: str, instruction: str) -> Conversation:
    messages = [
        {"role": "user", "content": user_text(row["prompt"], instruction)},
        {"role": "assistant", "content": solution},
    ]
    return Conversation(row["id"], row["source"], row["prompt"], row["answer"], messages)


def gsm8k_kind(record: dict[str, Any], index: int, source: SFTSourceConfig, instruction: str) -> Conversation:
    row = _adapted(record, index, source, sources.gsm8k)
    return _single(row, gsm8k_solution(row["meta"]["solution"], row["answer"]), instruction)


def math_kind(record: dict[str, Any], index: int, source: SFTSourceConfig, instruction: str) -> Conversation:
    row = _adapted(record, index, source, sources.math)
    if source.levels is not None and row["meta"].get("level") not in source.levels:
        raise Dropped("level_not_selected")
    solution = text_field(record, "solution").strip()
    if last_boxed(solution) is None:
        raise Dropped("no_boxed_answer")
    return _single(row, solution, instruction)


def equation_kind(adapter: Callable[..., Any], field: str, expression: Callable[[str], str]) -> KindFn:
    """MAWPS and ASDiv: the problem and gold as the RL builder reads them, the solution from `field`."""

    def make(record: dict[str, Any], index: int, source: SFTSourceConfig, instruction: str) -> Conversation:
        row = _adapted(record, index, source, adapter)
        if row["meta"].get("answers", 1) > 1:
            raise Dropped("several_answers")
        equation = text_field(record, field)
        try:
            solution = equation_solution(expression(equation), row["answer"])
        except EquationMismatch as exc:
            raise Dropped("equation_mismatch", str(exc)) from None
        except Unreadable as exc:
            raise Dropped("equation_unreadable", f"{equation[:60]!r}: {exc}") from None
        return _single(row, solution, instruction)

    return make


def mathdial_kind(
    record: dict[str, Any], index: int, source: SFTSourceConfig, instruction: str
) -> Conversation:
    """The problem and the student's incorrect solution, the dialogue, the teacher's closing solution. The
    instruction is not added: the student asks for help with a solution, not for one."""
    question = text_field(record, "question").strip()
    truth, final = final_line_split(text_field(record, "ground_truth"))
    try:
        answer = number_answer(final.replace(",", ""))
    except NotANumber:
        raise Dropped("answer_not_a_number", final[:40]) from None
    attempt, attempt_final = final_line_split(text_field(record, "student_incorrect_solution"))
    opening = f"{question}\n\nHere is my solution:\n{attempt}\nMy final answer is {attempt_final}."
    messages = [{"role": "user", "content": opening}]
    for turn in mathdial_turns(text_field(record, "conversation")):
        append_turn(messages, turn["role"], turn["content"])
    closing = f"Here is the full solution:\n{gsm8k_solution(truth, answer)}"
    if messages[-1]["role"] == "assistant":
        messages[-1]["content"] += "\n\n" + closing
    else:
        messages.append({"role": "assistant", "content": closing})
    return Conversation(f"{source.name}-{index}", source.name, question, answer, messages)


KINDS: dict[str, KindFn] = {
    "gsm8k": gsm8k_kind,
    "mawps": equation_kind(_MAWPS, "equation", mawps_expression),
    "asdiv": equation_kind(_ASDIV, "Formula", asdiv_expression),
    "math": math_kind,
    "mathdial": mathdial_kind,
}


# ---------------------------------------------------------------- the pipeline


def read_source(source: SFTSourceConfig, instruction: str, tally: Tally) -> list[Conversation]:
    """Every record of the source file as a conversation; a malformed line (not JSON, not an object, a
    field missing) is counted with its line number, as is every other drop."""
    try:
        records = file_records(Path(source.path))
    except ValueError as exc:
        raise RecipeError(f"source {source.name!r}: cannot read {exc}") from None
    make, out = KINDS[source.kind], []
    for index, (line, record) in enumerate(records):
        tally.read += 1
        try:
            if isinstance(record, Exception):
                raise Dropped("malformed", str(record))
            if not isinstance(record, dict):
                raise Dropped("malformed", f"a {type(record).__name__}, not a JSON object")
            out.append(make(record, index, source, instruction))
        except Dropped as drop:
            tally.drop(drop.reason, f"line {line}: {drop.detail}" if drop.detail else f"line {line}")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            tally.drop("malformed", f"line {line}: {exc}")
    return out


def short_enough(source: SFTSourceConfig, rows: list[Conversation], tally: Tally) -> list[Conversation]:
    """Rows within the source's `max_problem_chars` (the first problem) and `max_solution_chars` (all
    assistant turns); the others are dropped as problem_too_long / solution_too_long."""
    kept = []
    for row in rows:
        if source.max_problem_chars and len(row.question) > source.max_problem_chars:
            tally.drop("problem_too_long", row.id)
        elif source.max_solution_chars and row.solution_chars() > source.max_solution_chars:
            tally.drop("solution_too_long", row.id)
        else:
            kept.append(row)
    return kept


def decontaminated(rows: list[Conversation], index: dedup.Contamination, tally: Tally) -> list[Conversation]:
    """Rows whose problem overlaps no evaluation set; the others are dropped as `contaminated:<set>`."""
    kept = []
    for row in rows:
        hit = index.which(row.question)
        if hit:
            tally.drop(f"contaminated:{hit}", row.id)
        else:
            kept.append(row)
    return kept


def eval_texts(eval_set: SFTEvalSetConfig) -> tuple[list[str], int]:
    """The prompts of an evaluation set, and how many records had no text in `field`."""
    fields = [eval_set.field] if isinstance(eval_set.field, str) else eval_set.field
    texts, missing = [], 0
    for _, record in file_records(Path(eval_set.path)):
        text = _record_text(record, fields, eval_set.join) if isinstance(record, dict) else None
        if text:
            texts.append(text)
        else:
            missing += 1
    return texts, missing


def _record_text(record: dict[str, Any], fields: list[str], join: bool) -> str | None:
    """The fields joined by a newline (as `sources.generic` joins a question), or the first one present."""
    if join:
        try:
            return joined_text(record, fields)
        except ValueError:
            return None
    return next((record[f] for f in fields if isinstance(record.get(f), str) and record[f]), None)


def contamination(config: SFTDataConfig) -> tuple[dedup.Contamination, list[dict[str, Any]]]:
    """The n-grams of every evaluation set (`dedup.Contamination`) and the card's report of them; a missing
    file that is not `optional` is a RecipeError."""
    index = dedup.Contamination(min_overlap=config.contamination_overlap)
    report: list[dict[str, Any]] = []
    for eval_set in config.decontaminate:
        name = eval_set.name or Path(eval_set.path).name.split(".")[0]
        if not Path(eval_set.path).exists():
            if not eval_set.optional:
                raise RecipeError(
                    f"decontaminate: {eval_set.path} does not exist; build it first (a held-out split comes "
                    "from `rlvr data build`), remove the entry, or mark it optional: true"
                )
            report.append({"name": name, "path": eval_set.path, "prompts": None, "note": "absent (optional)"})
            continue
        texts, missing = eval_texts(eval_set)
        index.add(texts, name)
        report.append({"name": name, "path": eval_set.path, "prompts": len(texts), "without_text": missing})
    return index, report


def select(
    rows: list[Conversation], limit: int | None, rng: random.Random, seen: set[str], tally: Tally
) -> list[Conversation]:
    """In random order: a row whose problem text (normalised) is already in the set is a `duplicate`, one
    past the source's `limit` is `over_limit`; the rest are kept."""
    order = list(rows)
    rng.shuffle(order)
    kept: list[Conversation] = []
    for row in order:
        key = dedup.text_hash(row.question)
        if key in seen:
            tally.drop("duplicate", row.id)
        elif limit is not None and len(kept) >= limit:
            tally.drop("over_limit")
        else:
            seen.add(key)
            kept.append(row)
    tally.kept = len(kept)
    return kept


def two_problem(pool: list[Conversation], count: int, rng: random.Random) -> list[Conversation]:
    """`count` conversations, each two single-problem ones of `pool` back to back (fewer if the pool has
    fewer than 2 * count); the pool's rows used are removed from it."""
    singles = [c for c in pool if len(c.messages) == 2]
    chosen = rng.sample(singles, 2 * min(count, len(singles) // 2))
    used = {c.id for c in chosen}
    pool[:] = [c for c in pool if c.id not in used]
    return [
        Conversation(f"{a.id}+{b.id}", TWO_PROBLEMS, a.question, a.answer, [*a.messages, *b.messages])
        for a, b in zip(chosen[::2], chosen[1::2], strict=True)
    ]


def build_sft_set(config: SFTDataConfig) -> dict[str, Any]:
    """Runs the pipeline (module docstring); writes sft.jsonl, card.md and card.json; returns the card."""
    missing = [s.path for s in config.sources if not Path(s.path).exists()]
    if missing:
        raise RecipeError(f"sources: no such file(s) {missing}")
    index, report = contamination(config)
    tallies = {s.name: Tally() for s in config.sources}
    seen: set[str] = set()
    pool: list[Conversation] = []
    for source in config.sources:
        tally = tallies[source.name]
        rows = decontaminated(read_source(source, config.instruction, tally), index, tally)
        rows = short_enough(source, rows, tally)
        pool += select(rows, source.limit, random.Random(f"{config.seed}:{source.name}"), seen, tally)
    for entry in report:
        entry["rows_dropped"] = sum(t.dropped[f"contaminated:{entry['name']}"] for t in tallies.values())
    rng = random.Random(config.seed)
    pairs = two_problem(pool, config.two_problem_conversations, rng)
    rows = pool + pairs
    rng.shuffle(rows)
    card = describe(config, rows, tallies, report)
    write(Path(config.output_dir), rows, card)
    return card


# ---------------------------------------------------------------- outputs


def char_stats(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(values),
        "min": ordered[0],
        "median": int(statistics.median(ordered)),
        "mean": round(statistics.fmean(ordered), 1),
        "p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "max": ordered[-1],
        "total": sum(ordered),
    }


def _problems_of(row: Conversation) -> list[str]:
    """The source names of a conversation's problems (two for a two-problem one: from its id)."""
    if row.source != TWO_PROBLEMS:
        return [row.source]
    return [part.rpartition("-")[0] for part in row.id.split("+")]


def describe(
    config: SFTDataConfig, rows: list[Conversation], tallies: dict[str, Tally], report: list[dict[str, Any]]
) -> dict[str, Any]:
    """The data card as a dict (card.json; `sft_card.card_markdown` renders it)."""
    in_pairs = Counter(name for r in rows if r.source == TWO_PROBLEMS for name in _problems_of(r))
    per_source = {}
    for s in config.sources:
        t = tallies[s.name]
        per_source[s.name] = {
            "kind": s.kind,
            "path": s.path,
            "license": s.license,
            "read": t.read,
            "dropped": dict(t.dropped.most_common()),
            "drop_examples": {k: v for k, v in t.examples.items() if v},
            "kept_problems": t.kept,
            "in_two_problem_conversations": in_pairs[s.name],
        }
    licenses: Counter[str] = Counter()
    for s in config.sources:
        licenses[s.license] += tallies[s.name].kept
    by_group: dict[str, list[Conversation]] = {}
    for row in rows:
        by_group.setdefault(row.source, []).append(row)
    return {
        "output_dir": config.output_dir,
        "files": [OUTPUT, "card.md", "card.json"],
        "seed": config.seed,
        "instruction": config.instruction,
        "conversations": len(rows),
        "messages": sum(len(r.messages) for r in rows),
        "sources": per_source,
        "problems_by_license": dict(licenses.most_common()),
        "two_problem_conversations": {
            "asked": config.two_problem_conversations,
            "made": len(by_group.get(TWO_PROBLEMS, [])),
        },
        "decontamination": report,
        "conversations_by_source": {name: _group(group) for name, group in sorted(by_group.items())},
        "chars": _group(rows)["chars"],
    }


def _group(rows: list[Conversation]) -> dict[str, Any]:
    """Counts and character lengths (no tokenizer) of some conversations, and the first as a sample."""
    return {
        "conversations": len(rows),
        "messages": sum(len(r.messages) for r in rows),
        "assistant_turns": sum(1 for r in rows for m in r.messages if m["role"] == "assistant"),
        "chars": char_stats([sum(len(m["content"]) for m in r.messages) for r in rows]),
        "assistant_chars": char_stats([r.solution_chars() for r in rows]),
        "sample": rows[0].record() if rows else None,
    }


def write(out: Path, rows: list[Conversation], card: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / OUTPUT, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row.record(), ensure_ascii=False) + "\n")
    (out / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    (out / "card.md").write_text(card_markdown(card))


def summary(card: dict[str, Any]) -> str:
    """What `rlvr data sft` prints: the files, and per source rows read, dropped and kept."""
    lines = [
        f"wrote {card['conversations']} conversations ({card['messages']} messages) to "
        f"{card['output_dir']}/{OUTPUT} (and {', '.join(card['files'][1:])})"
    ]
    for name, s in card["sources"].items():
        drops = ", ".join(f"{reason} {n}" for reason, n in s["dropped"].items()) or "none"
        lines.append(f"  {name}: read {s['read']}, kept {s['kept_problems']} problems; dropped: {drops}")
        lines += [f"    malformed {example}" for example in s["drop_examples"].get("malformed", [])]
    pairs = card["two_problem_conversations"]
    lines.append(f"  {TWO_PROBLEMS}: {pairs['made']} of {pairs['asked']} asked")
    return "\n".join(lines)
