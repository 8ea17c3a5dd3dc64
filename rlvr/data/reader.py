"""One reader for every prompt file the trainer, `rlvr sft` and `rlvr eval` are given.

    task://arithmetic?...          the built-in synthetic task (`arithmetic.py`)
    prompt-set files               the builder's schema (`schema.py`), .parquet / .jsonl / .json (.gz)
    a public file as published     GSM8K, MATH, AQuA-RAT, MMLU records, read through the builder's own source
                                   adapters and multiple-choice conversion (`sources.py`, `filters.py`)

A malformed or unconvertible row is a problem line with its reason; a file with no usable row at all is a
ValueError naming the file and its first problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlvr.data.arithmetic import is_task_source, task_rows
from rlvr.data.filters import to_open_ended
from rlvr.data.schema import REQUIRED_FIELDS, PromptFile, PromptRow, file_records, rows_from_records
from rlvr.data.sources import (
    ADAPTERS,
    DEFAULT_VERIFIER,
    adapt_record,
    adapter_for,
    detect_adapter,
    prompt_row,
)

_SNIFF_ROWS = 20


def read_prompt_file(path: str | Path, adapter: str | None = None) -> PromptFile:
    """Rows of a prompt file in any of the forms above; `adapter` forces a source format (`gsm8k`, ...).

    Raises FileNotFoundError for a missing file and ValueError for an unknown file type or record format."""
    if is_task_source(str(path)):
        return PromptFile(Path(str(path)), task_rows(str(path)), [], note="synthetic task")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {str(path)!r} does not exist")
    records = file_records(path)
    name = adapter or _source_format(path, records)
    if name is None:
        return rows_from_records(path, records)
    if name not in ADAPTERS:
        raise ValueError(f"unknown source format {name!r}; known: {', '.join(ADAPTERS)}")
    return _adapted(path, records, name)


def _source_format(path: Path, records: list[tuple[int, Any]]) -> str | None:
    """None for the prompt schema, else the built-in adapter the file's records fit."""
    sample = [r for _, r in records[:_SNIFF_ROWS] if isinstance(r, dict)]
    if not sample or any("prompt" in r for r in sample):  # the schema's own field: malformed rows say why
        return None
    for record in sample:
        name = detect_adapter(record)
        if name is not None:
            return name
    raise ValueError(
        f"{path}: rows are neither the prompt-set schema ({', '.join(REQUIRED_FIELDS)}, ...) nor a known "
        f"source format ({', '.join(ADAPTERS)}); the first row has fields {sorted(sample[0])}. Build a "
        "prompt set with `rlvr data build` (a generic adapter maps any fields)"
    )


def _adapted(path: Path, records: list[tuple[int, Any]], name: str) -> PromptFile:
    """Raw source records -> schema rows via the builder's adapter and multiple-choice conversion."""
    source = path.name.split(".")[0]
    adapt, verifier = adapter_for(name), DEFAULT_VERIFIER[name]
    rows: list[PromptRow] = []
    problems: list[str] = []
    for line_no, record in records:
        if not isinstance(record, dict):
            reason = str(record) if isinstance(record, Exception) else f"row is a {type(record).__name__}"
            problems.append(f"row {line_no}: {reason}")
            continue
        row = to_open_ended(adapt_record(record, line_no - 1, source, adapt, verifier))
        if row["drop"]:
            problems.append(f"row {line_no}: {row['drop']}")
        else:
            rows.append(prompt_row(row))
    note = f"raw {name} records, read through the dataset builder's {name} adapter"
    return PromptFile(path, rows, problems, note=note)


def require_rows(prompts: PromptFile, what: str = "prompt file") -> list[PromptRow]:
    """The rows of `prompts`; ValueError naming the file and its first problems when there are none."""
    if prompts.rows:
        return prompts.rows
    first = "; ".join(prompts.problems[:3]) or "the file is empty"
    raise ValueError(
        f"{what} {prompts.path} has no usable rows ({prompts.malformed} malformed; first: {first})"
    )


def load_prompts(files: list[str], what: str = "data.train_files") -> list[PromptRow]:
    """The rows of every file (schema, raw public files, task://), malformed ones reported on the console;
    ValueError when a file has no usable row."""
    rows = []
    for path in files:
        prompts = read_prompt_file(path)
        note = f" ({prompts.note})" if prompts.note else ""
        print(f"{what}: {path}: {len(prompts.rows)} rows{note}, {prompts.malformed} malformed")
        for problem in prompts.problems[:5]:
            print(f"  malformed {problem}")
        rows.extend(require_rows(prompts, what))
    return rows
