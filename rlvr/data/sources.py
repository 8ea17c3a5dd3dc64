"""Dataset builder, stage 1: source datasets -> candidate rows in one schema.

A candidate is a plain dict (so HF `datasets` can stream and `map` it with `num_proc`):

    id, prompt, answer, verifier, source   the prompt-set schema (answer "" for a multiple-choice item until
                                           stage 3 turns the correct option into it)
    choices (list[str]), letter (str)      multiple-choice items only: the options without their labels and
                                           the correct letter
    meta (str)                             JSON of what the row needs later (a worked solution, the
                                           subject, ...): not a copy of the source record
    drop (str)                             "" or the reason this row leaves the pipeline

Adapters are pure functions of one record. A record an adapter cannot read (missing or wrong-typed field) is
not an exception: it becomes a row with `drop = "malformed: ..."`, counted in the data card.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlvr.data.schema import PromptRow
from verifiers.extract import last_boxed

LETTERS = "ABCDEFGHIJ"
_OPTION_LABEL = re.compile(r"^\s*\(?([A-Ja-j])\s*[).:]\s*")


def candidate(
    source: str,
    index: int,
    prompt: Any = "",
    answer: Any = "",
    verifier: str = "math",
    choices: list[str] | None = None,
    letter: str = "",
    drop: str = "",
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"{source}-{index}",
        "prompt": str(prompt or "").strip(),
        "answer": str(answer if answer is not None else "").strip(),
        "verifier": verifier,
        "source": source,
        "choices": list(choices or []),
        "letter": letter,
        "meta": json.dumps(meta or {}, ensure_ascii=False, default=str),
        "drop": drop,
    }


def _text(record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {field!r} missing or not a non-empty string")
    return value


def _kept(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The source fields a row keeps in meta (those present and not empty)."""
    return {f: record[f] for f in fields if record.get(f) not in (None, "")}


def gsm8k(record: dict[str, Any]) -> dict[str, Any]:
    """GSM8K: the gold is what follows `####` in the worked answer, commas removed; the worked answer is
    kept as meta["solution"] (for SFT)."""
    solution = _text(record, "answer")
    if "####" not in solution:
        raise ValueError("answer has no '#### <final answer>' line")
    return {
        "prompt": _text(record, "question"),
        "answer": solution.split("####")[-1].strip().replace(",", ""),
        "meta": {"solution": solution},
    }


def math(record: dict[str, Any]) -> dict[str, Any]:
    """MATH: the gold is the last `\\boxed{}` of the solution (or the `answer` field where there is one)."""
    answer = record.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        answer = last_boxed(_text(record, "solution")) or ""
    meta = _kept(record, ("solution", "subject", "type", "level", "unique_id"))
    return {"prompt": _text(record, "problem"), "answer": answer, "meta": meta}


def strip_option_label(option: str) -> str:
    """`C)25` -> `25`, `(b) 7 km` -> `7 km`."""
    return _OPTION_LABEL.sub("", option, count=1).strip()


def aqua(record: dict[str, Any]) -> dict[str, Any]:
    """AQuA-RAT: five labelled options (`A)125`) and the correct letter."""
    options = record.get("options")
    if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
        raise ValueError("field 'options' missing or not a list of strings")
    letter = _text(record, "correct").strip().upper()
    return {
        "prompt": _text(record, "question"),
        "choices": [strip_option_label(o) for o in options],
        "letter": letter,
        "meta": _kept(record, ("rationale",)),
    }


def mmlu(record: dict[str, Any]) -> dict[str, Any]:
    """MMLU: four unlabelled choices and the correct letter."""
    choices = record.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("field 'choices' missing or not a list")
    return {
        "prompt": _text(record, "question"),
        "choices": [str(c).strip() for c in choices],
        "letter": _text(record, "answer").strip().upper(),
        "meta": _kept(record, ("subject", "split")),
    }


def generic(mapping: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An adapter from a recipe's field mapping: `question_field`, `answer_field`, for multiple choice
    `choices_field` plus either `answer_field` holding the letter or `letter_field`, and `meta_fields` (the
    source fields the row keeps)."""
    question, answer = mapping.get("question_field") or "question", mapping.get("answer_field")
    choices_field, letter_field = mapping.get("choices_field"), mapping.get("letter_field")
    meta_fields = tuple(mapping.get("meta_fields") or ())

    def adapt(record: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt": _text(record, question), "meta": _kept(record, meta_fields)}
        if choices_field:
            options = record.get(choices_field)
            if not isinstance(options, list) or not options:
                raise ValueError(f"field {choices_field!r} missing or not a list")
            out["choices"] = [strip_option_label(str(o)) for o in options]
            out["letter"] = _text(record, letter_field or answer or "answer").strip().upper()
        else:
            value = record.get(answer or "answer")
            if value is None or not str(value).strip():
                raise ValueError(f"field {answer or 'answer'!r} missing or empty")
            out["answer"] = str(value)
        return out

    return adapt


ADAPTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "gsm8k": gsm8k,
    "math": math,
    "aqua": aqua,
    "mmlu": mmlu,
}
# The verifier a source's rows name unless its recipe entry says otherwise.
DEFAULT_VERIFIER = {"gsm8k": "numeric", "math": "math", "aqua": "math", "mmlu": "math", "generic": "math"}
# How a raw record of each known source looks (for `rlvr eval --data` on a file as published).
_SIGNATURES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "gsm8k": lambda r: "question" in r and "####" in str(r.get("answer", "")),
    "math": lambda r: "problem" in r and ("solution" in r or "answer" in r),
    "aqua": lambda r: {"question", "options", "correct"} <= set(r),
    "mmlu": lambda r: {"question", "choices", "answer"} <= set(r),
}


def detect_adapter(record: Any) -> str | None:
    """The built-in adapter whose source format `record` has, or None."""
    if not isinstance(record, dict):
        return None
    return next((name for name, looks in _SIGNATURES.items() if looks(record)), None)


def adapter_for(name: str, mapping: dict[str, Any] | None = None) -> Callable[..., dict[str, Any]]:
    if name == "generic":
        return generic(mapping or {})
    if name not in ADAPTERS:
        raise ValueError(f"unknown adapter {name!r}; allowed: {', '.join([*ADAPTERS, 'generic'])}")
    return ADAPTERS[name]


def adapt_record(
    record: dict[str, Any], index: int, source: str, adapter: Callable[..., dict[str, Any]], verifier: str
) -> dict[str, Any]:
    """One source record -> one candidate (a malformed record -> a candidate with its drop reason)."""
    try:
        fields = adapter(record)
    except (ValueError, TypeError, AttributeError) as exc:
        return candidate(source, index, drop=f"malformed: {exc}")
    return candidate(source, index, verifier=verifier, **fields)


def prompt_row(row: dict[str, Any], k: int | None = None) -> PromptRow:
    """A pipeline candidate as a row of the prompt-set schema (what the trainer and `rlvr eval` read); a
    converted multiple-choice item keeps its options and letter in meta."""
    meta = json.loads(row["meta"])
    if row["choices"]:
        meta = {**meta, "mc_letter": row["letter"], "mc_options": row["choices"]}
    solved = row.get("solved") if k is not None else None
    return PromptRow(
        id=row["id"],
        prompt=row["prompt"],
        answer=row["answer"],
        verifier=row["verifier"],
        source=row["source"],
        meta=meta,
        solved=solved,
        k=k if solved is not None else None,
        pass_rate=solved / k if solved is not None and k else None,
    )


def data_format(paths: list[str]) -> str:
    """The `datasets` builder for local files: json (jsonl, json, .gz), parquet or csv."""
    suffixes = {"".join(s for s in Path(p).suffixes if s != ".gz") for p in paths}
    if suffixes <= {".jsonl", ".json"}:
        return "json"
    if suffixes == {".parquet"}:
        return "parquet"
    if suffixes == {".csv"}:
        return "csv"
    raise ValueError(f"cannot mix or read file types {sorted(suffixes)}; use jsonl/json/parquet/csv")
