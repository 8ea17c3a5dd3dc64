"""The prompt-row schema: malformed rows are counted with a reason, never dropped silently."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlvr.data import read_prompt_file
from rlvr.data.schema import row_from_mapping


def test_reads_jsonl_with_reasons(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    rows = [
        {"id": 1, "prompt": "p", "answer": "3", "verifier": "numeric", "source": "s", "meta": {"k": 1}},
        {"id": "2", "prompt": "p", "answer": ""},
        {"id": "3", "prompt": "p", "answer": "4", "extra": 1},
        {"id": "4", "prompt": "p", "answer": "4", "meta": "x"},
        ["not", "an", "object"],
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n{broken\n")
    prompts = read_prompt_file(path)
    assert [r.id for r in prompts.rows] == ["1"]
    assert prompts.rows[0].verifier == "numeric" and prompts.rows[0].meta == {"k": 1}
    assert prompts.malformed == 5
    joined = "\n".join(prompts.problems)
    for reason in (
        "row 2: missing 'answer'",
        "row 3: unknown field(s) 'extra'",
        "row 4: 'meta' must be",
        "row 5: row is a list",
        "row 7: not JSON",
    ):
        assert reason in joined


def test_reads_parquet(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "a", "prompt": "q", "answer": "1", "source": "x"}]), path)
    prompts = read_prompt_file(path)
    assert prompts.rows[0].answer == "1" and prompts.malformed == 0


def test_unsupported_type_and_defaults(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported prompt file type"):
        (tmp_path / "p.csv").write_text("a,b\n")
        read_prompt_file(tmp_path / "p.csv")
    row = row_from_mapping({"id": "x", "prompt": "q", "answer": 7})
    assert (row.answer, row.verifier, row.meta) == ("7", "math", {})
