"""The prompt-row schema: malformed rows are counted with a reason, never dropped silently."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rlvr.data import PromptRow, read_prompt_file, require_rows, write_prompt_file
from rlvr.data.schema import fingerprint, row_from_mapping


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
    # a row naming no verifier gets the recipe's (verifier.name) where it is used
    assert (row.answer, row.verifier, row.meta) == ("7", None, {})
    assert row.verifier_or("numeric") == "numeric"


def test_builder_style_parquet_reads_meta_text_and_keeps_difficulty_columns(tmp_path: Path) -> None:
    """What `rlvr data build` writes: meta as JSON text (parquet rows differ in shape), solved/k/pass_rate."""
    rows = [
        PromptRow("g-1", "2+2?", "4", "numeric", "gsm8k", {"solution": "2+2=4 #### 4"}, 3, 8, 0.375),
        PromptRow("m-1", "x?", "\\frac12", None, "math", {"level": 3}, 0, 8, 0.0),
    ]
    for suffix in (".parquet", ".jsonl"):
        path = write_prompt_file(rows, tmp_path / f"prompts{suffix}")
        back = read_prompt_file(path)
        assert back.malformed == 0 and back.rows == rows, suffix
    table = pq.read_table(tmp_path / "prompts.parquet").to_pylist()
    assert isinstance(table[0]["meta"], str) and json.loads(table[0]["meta"]) == {"solution": "2+2=4 #### 4"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "prompt": "p", "answer": "1", "solved": 9, "k": 8}) + "\n")
    assert "0 <= solved <= k" in read_prompt_file(bad).problems[0]
    assert fingerprint(rows) != fingerprint(rows[:1]) and fingerprint(rows) == fingerprint(list(rows))


def test_raw_public_files_read_through_the_builders_adapters(shared_data: Path) -> None:
    gsm8k = read_prompt_file(shared_data / "gsm8k_test.jsonl")
    assert len(gsm8k.rows) == 1319 and gsm8k.malformed == 0 and "gsm8k" in gsm8k.note
    first = gsm8k.rows[0]
    assert first.verifier == "numeric" and first.answer.isdigit() and "####" not in first.prompt
    assert set(first.meta) == {"solution"}  # what SFT needs, not a second copy of the question
    aqua = read_prompt_file(shared_data / "aqua_rat_test.jsonl")
    assert aqua.rows and aqua.problems and all(p.split(": ", 1)[1].startswith("mc_") for p in aqua.problems)
    assert {"mc_letter", "mc_options"} <= set(aqua.rows[0].meta)
    math = read_prompt_file(shared_data / "math_train.jsonl")
    assert len(math.rows) > 11_000 and math.rows[0].verifier == "math"


def test_a_file_without_usable_rows_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "e.jsonl"
    empty.write_text('{"id": "a", "prompt": "p"}\n')
    with pytest.raises(ValueError, match=r"e.jsonl has no usable rows .*row 1: missing 'answer'"):
        require_rows(read_prompt_file(empty))
    other = tmp_path / "o.jsonl"
    other.write_text('{"text": "hello", "label": 1}\n')
    with pytest.raises(ValueError, match="neither the prompt-set schema .* first row has fields"):
        read_prompt_file(other)
