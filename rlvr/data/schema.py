"""The prompt-set record: one schema that the dataset builder writes and the trainer, `rlvr eval` and the
builder's difficulty stage read, in parquet and JSONL alike.

Each row:

    id (str)        unique within the set
    prompt (str)    the problem text, before any chat template or instruction (the Sampler adds those)
    answer (str)    the gold answer the verifier checks against
    verifier (str)  a verifier spec for this row (`numeric`, `math`, `pkg.module:obj`); empty or null: the
                    recipe's `verifier.name`
    source (str)    where the row came from (the data card's and the metrics' grouping)
    meta (object)   what the row needs later, e.g. a worked `solution` for SFT or the options of a converted
                    multiple-choice item; not a copy of the source record. Parquet stores it as JSON text.
    solved, k, pass_rate   optional difficulty columns of the builder (solved of k attempts); kept

A malformed row is counted with its line and reason, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROMPT_FIELDS = ("id", "prompt", "answer", "verifier", "source", "meta")
DIFFICULTY_FIELDS = ("solved", "k", "pass_rate")
REQUIRED_FIELDS = ("id", "prompt", "answer")
_TEXT_FIELDS = ("id", "prompt", "answer", "verifier", "source")


@dataclass(frozen=True)
class PromptRow:
    id: str
    prompt: str
    answer: str
    verifier: str | None = None  # None: the recipe's default verifier
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    solved: int | None = None
    k: int | None = None
    pass_rate: float | None = None

    def verifier_or(self, default: str) -> str:
        """This row's verifier spec, or `default` (the recipe's `verifier.name`) when it names none."""
        return self.verifier or default

    def to_record(self, meta_as_text: bool = False) -> dict[str, Any]:
        """The row as a plain record (what `row_from_mapping` reads back); difficulty columns only when set.
        `meta_as_text` writes meta as JSON text, as parquet stores it (its rows differ in shape)."""
        record: dict[str, Any] = {
            "id": self.id,
            "prompt": self.prompt,
            "answer": self.answer,
            "verifier": self.verifier or "",
            "source": self.source,
            "meta": json.dumps(self.meta, ensure_ascii=False) if meta_as_text else dict(self.meta),
        }
        if self.solved is not None:
            record.update(solved=self.solved, k=self.k, pass_rate=self.pass_rate)
        return record


@dataclass
class PromptFile:
    path: Path
    rows: list[PromptRow]
    problems: list[str]  # "row 7: missing 'answer'" — one per malformed row
    note: str = ""  # how the file was read, e.g. "raw gsm8k records through the builder's adapter"

    @property
    def malformed(self) -> int:
        return len(self.problems)


def _meta(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(
                "'meta' must be an object (or JSON text of one), got a non-JSON string"
            ) from None
    if not isinstance(value, dict):
        raise ValueError(f"'meta' must be an object (or JSON text of one), got {type(value).__name__}")
    return value


def _difficulty(record: dict[str, Any]) -> dict[str, Any]:
    values = {k: record.get(k) for k in DIFFICULTY_FIELDS}
    if all(v is None for v in values.values()):
        return {}
    solved, k, rate = values["solved"], values["k"], values["pass_rate"]
    if not (isinstance(solved, int) and isinstance(k, int) and 0 <= solved <= k and k > 0):
        raise ValueError(f"difficulty columns need integers 0 <= solved <= k, k > 0 (got {solved}, {k})")
    return {"solved": solved, "k": k, "pass_rate": float(rate) if rate is not None else solved / k}


def row_from_mapping(record: Any) -> PromptRow:
    """Validate one record into a `PromptRow`; raises ValueError naming the offending field."""
    if not isinstance(record, dict):
        raise ValueError(f"row is a {type(record).__name__}, not an object")
    missing = [k for k in REQUIRED_FIELDS if record.get(k) in (None, "")]
    if missing:
        raise ValueError(f"missing {', '.join(repr(k) for k in missing)}")
    unknown = sorted(set(record) - set(PROMPT_FIELDS) - set(DIFFICULTY_FIELDS))
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; the schema is "
            f"{', '.join(PROMPT_FIELDS + DIFFICULTY_FIELDS)}"
        )
    for key in _TEXT_FIELDS:
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            raise ValueError(f"{key!r} must be a string, got {type(value).__name__}")
    return PromptRow(
        id=str(record["id"]),
        prompt=str(record["prompt"]),
        answer=str(record["answer"]),
        verifier=str(record["verifier"]) if record.get("verifier") not in (None, "") else None,
        source=str(record.get("source") or ""),
        meta=_meta(record.get("meta")),
        **_difficulty(record),
    )


def file_records(path: Path) -> list[tuple[int, Any]]:
    """(line or row number, record) of a .jsonl/.json/.parquet file, gzip allowed for JSON; a line that is
    not JSON becomes a ValueError in place of its record."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    suffix = suffixes[-1] if suffixes else ""
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(enumerate(pq.read_table(path).to_pylist(), start=1))
    if suffix not in (".json", ".jsonl"):
        raise ValueError(f"{path}: unsupported prompt file type {suffix!r} (use .jsonl, .json or .parquet)")
    text = _read_text(path)
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:  # one document: nothing to keep, and the error names the file
            raise ValueError(f"{path}: not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        return list(enumerate(data if isinstance(data, list) else [data], start=1))
    records: list[tuple[int, Any]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((line_no, json.loads(line)))
        except json.JSONDecodeError as exc:
            records.append((line_no, ValueError(f"not JSON: {exc.msg} (column {exc.colno})")))
    return records


def _read_text(path: Path) -> str:
    if path.suffix.lower() == ".gz":
        import gzip

        with gzip.open(path, "rt", encoding="utf-8-sig", errors="replace") as f:
            return f.read()
    return path.read_text(encoding="utf-8-sig", errors="replace")


def rows_from_records(path: Path, records: list[tuple[int, Any]]) -> PromptFile:
    """Schema records -> rows, with one problem line per malformed record."""
    rows: list[PromptRow] = []
    problems: list[str] = []
    for line_no, record in records:
        try:
            if isinstance(record, Exception):
                raise record
            rows.append(row_from_mapping(record))
        except ValueError as exc:
            problems.append(f"row {line_no}: {exc}")
    return PromptFile(path, rows, problems)


def write_prompt_file(rows: list[PromptRow], path: str | Path) -> Path:
    """Writes rows as .parquet (meta as JSON text) or .jsonl (meta as an object); the readers take both."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([r.to_record(meta_as_text=True) for r in rows]), path)
    elif path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row.to_record(), ensure_ascii=False) + "\n")
    else:
        raise ValueError(f"{path}: write .parquet or .jsonl")
    return path


def fingerprint(rows: list[PromptRow]) -> dict[str, Any]:
    """What identifies a prompt set across a resume: its size and a hash of its ids in order."""
    digest = hashlib.sha256("\n".join(r.id for r in rows).encode()).hexdigest()[:16]
    return {"count": len(rows), "ids_sha256": digest}
