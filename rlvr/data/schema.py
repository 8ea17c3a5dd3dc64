"""The prompt-set schema shared by the dataset builder, the trainer and `rlvr eval`.

Each row: `id` (str), `prompt` (str), `answer` (str, the gold), `verifier` (str, a verifier spec),
`source` (str) and `meta` (dict, the original fields). A malformed row is counted with its line and reason,
never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROMPT_FIELDS = ("id", "prompt", "answer", "verifier", "source", "meta")
REQUIRED_FIELDS = ("id", "prompt", "answer")


@dataclass(frozen=True)
class PromptRow:
    id: str
    prompt: str
    answer: str
    verifier: str = "math"
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptFile:
    path: Path
    rows: list[PromptRow]
    problems: list[str]  # "line 7: missing 'answer'" — one per malformed row

    @property
    def malformed(self) -> int:
        return len(self.problems)


def row_from_mapping(record: Any) -> PromptRow:
    """Validate one record into a `PromptRow`; raises ValueError naming the offending field."""
    if not isinstance(record, dict):
        raise ValueError(f"row is a {type(record).__name__}, not an object")
    missing = [k for k in REQUIRED_FIELDS if record.get(k) in (None, "")]
    if missing:
        raise ValueError(f"missing {', '.join(repr(k) for k in missing)}")
    unknown = sorted(set(record) - set(PROMPT_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; the schema is {', '.join(PROMPT_FIELDS)}"
        )
    for key in ("id", "prompt", "answer", "verifier", "source"):
        if key in record and record[key] is not None and not isinstance(record[key], str | int | float):
            raise ValueError(f"{key!r} must be a string, got {type(record[key]).__name__}")
    meta = record.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"'meta' must be an object, got {type(meta).__name__}")
    return PromptRow(
        id=str(record["id"]),
        prompt=str(record["prompt"]),
        answer=str(record["answer"]),
        verifier=str(record.get("verifier") or "math"),
        source=str(record.get("source") or ""),
        meta=meta,
    )


def _records(path: Path) -> list[tuple[int, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(enumerate(pq.read_table(path).to_pylist(), start=1))
    if suffix == ".json":
        data = json.loads(path.read_text())
        return list(enumerate(data if isinstance(data, list) else [data], start=1))
    if suffix != ".jsonl":
        raise ValueError(f"{path}: unsupported prompt file type {suffix!r} (use .jsonl, .json or .parquet)")
    records: list[tuple[int, Any]] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append((line_no, json.loads(line)))
            except json.JSONDecodeError as exc:
                records.append((line_no, ValueError(f"not JSON ({exc.msg})")))
    return records


def read_prompt_file(path: str | Path) -> PromptFile:
    """Read a .jsonl/.json/.parquet prompt file; malformed rows are returned in `problems`, not dropped.

    `task://arithmetic?n=...&seed=...` generates the built-in synthetic task instead (see arithmetic.py).
    """
    from rlvr.data.arithmetic import is_task_source, task_rows

    if is_task_source(str(path)):
        return PromptFile(Path(str(path)), task_rows(str(path)), [])
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {str(path)!r} does not exist")
    rows: list[PromptRow] = []
    problems: list[str] = []
    for line_no, record in _records(path):
        try:
            if isinstance(record, Exception):
                raise record
            rows.append(row_from_mapping(record))
        except ValueError as exc:
            problems.append(f"row {line_no}: {exc}")
    return PromptFile(path, rows, problems)
