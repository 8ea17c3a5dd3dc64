"""Dataset builder, stage 1: source datasets -> candidate rows in one schema.

A candidate is a plain dict (so HF `datasets` can stream and `map` it with `num_proc`):

    id, prompt, answer, verifier, source   the prompt-set schema (answer "" for a multiple-choice item until
                                           stage 3 turns the correct option into it)
    choices (list[str]), letter (str)      multiple-choice items only: the options without their labels and
                                           the correct letter
    meta (str)                             JSON of what the row needs later (a worked solution, the
                                           subject, ...): not a copy of the source record
    drop (str)                             "" or the reason this row leaves the pipeline

Adapters are pure functions of one record: `gsm8k`, `math`, `aqua`, `mmlu` here, the multiple-choice layouts
a field mapping cannot read in `mc_formats.py` (`tal`, `mathqa_mc`, `arc_mc`), and `generic`, a recipe's field
mapping (several question fields, number golds, an option index in place of a letter). A record an adapter
cannot read (missing or wrong-typed field) is not an exception: it becomes a row with
`drop = "malformed: ..."`, counted in the data card; a gold that should be a number and is not becomes
`drop = "answer_not_a_number"`. Every row's meta carries its source's license.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlvr.data.fields import (
    LETTERS,
    MULTI_ANSWER_HINT,
    NotANumber,
    desegment,
    halfwidth,
    joined_text,
    kept,
    language,
    numbers_answer,
    strip_option_label,
    text_field,
)
from rlvr.data.mc_formats import arc_mc, mathqa_mc, tal
from rlvr.data.schema import PromptRow
from verifiers.extract import final_boxes, last_boxed

__all__ = ["LETTERS", "strip_option_label"]  # their home is fields.py; filters and tests import them here


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
    """One pipeline row (the columns in the module docstring). The prompt loses the spaces of word-segmented
    Chinese; the answer's full-width digits and punctuation become ASCII (`５０％` -> `50%`)."""
    return {
        "id": f"{source}-{index}",
        "prompt": desegment(str(prompt or "").strip()),
        "answer": halfwidth(str(answer if answer is not None else "")).strip(),
        "verifier": verifier,
        "source": source,
        "choices": list(choices or []),
        "letter": letter,
        "meta": json.dumps(meta or {}, ensure_ascii=False, default=str),
        "drop": drop,
    }


def gsm8k(record: dict[str, Any]) -> dict[str, Any]:
    """GSM8K: the gold is what follows `####` in the worked answer, commas removed; the worked answer is
    kept as meta["solution"] (for SFT)."""
    solution = text_field(record, "answer")
    if "####" not in solution:
        raise ValueError("answer has no '#### <final answer>' line")
    return {
        "prompt": text_field(record, "question"),
        "answer": solution.split("####")[-1].strip().replace(",", ""),
        "meta": {"solution": solution},
    }


def math(record: dict[str, Any]) -> dict[str, Any]:
    """MATH: the gold is the `answer` field where there is one, else the last `\\boxed{}` of the solution. A
    solution that ends on several boxes (`t = \\boxed{\\frac13}$ or $t = \\boxed{-\\frac52}`) answers with all
    of them: a gold holding only the last one would score the full reference answer as a hedge."""
    answer = record.get("answer")
    solution = record.get("solution") if isinstance(record.get("solution"), str) else ""
    try:
        boxes = final_boxes(solution)
    except ValueError:  # a box that never closes: the answer field, or nothing
        boxes = []
    if not isinstance(answer, str) or not answer.strip():
        answer = boxes[-1] if boxes else (last_boxed(text_field(record, "solution")) or "")
    if len(set(boxes)) > 1 and answer.strip() == boxes[-1]:
        answer = ", ".join(boxes)
    meta = kept(record, ("solution", "subject", "type", "level", "unique_id"))
    return {"prompt": text_field(record, "problem"), "answer": answer, "meta": meta}


def aqua(record: dict[str, Any]) -> dict[str, Any]:
    """AQuA-RAT: five labelled options (`A)125`) and the correct letter."""
    options = record.get("options")
    if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
        raise ValueError("field 'options' missing or not a list of strings")
    letter = text_field(record, "correct").strip().upper()
    return {
        "prompt": text_field(record, "question"),
        "choices": [strip_option_label(o) for o in options],
        "letter": letter,
        "meta": kept(record, ("rationale",)),
    }


def mmlu(record: dict[str, Any]) -> dict[str, Any]:
    """MMLU: four unlabelled choices and the correct letter."""
    choices = record.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("field 'choices' missing or not a list")
    return {
        "prompt": text_field(record, "question"),
        "choices": [str(c).strip() for c in choices],
        "letter": text_field(record, "answer").strip().upper(),
        "meta": kept(record, ("subject", "split")),
    }


def _choice_letter(value: Any, index_base: int | None) -> str:
    """The correct option as a letter: `b` -> `B`; with `index_base` 0 or 1, an index (`2` -> `C` from 0)."""
    if index_base is None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("the correct letter is missing or not a string")
        return value.strip().upper()
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise ValueError(f"the correct option {value!r} is not an index")
    position = int(value) - index_base
    return LETTERS[position] if 0 <= position < len(LETTERS) else f"#{value}"


def _gold(record: dict[str, Any], field: str, answer_type: str) -> dict[str, Any]:
    """The gold of an open-ended record: its text, or with `answer_type: number` one or several numbers (a
    list, or text split at `;`); several get the multi-answer hint in the prompt and the count in meta."""
    value = record.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"field {field!r} missing or empty")
    if answer_type == "text":
        return {"answer": str(value)}
    try:
        answer, count = numbers_answer(value)
    except NotANumber:
        return {"answer": "", "drop": "answer_not_a_number"}
    return {"answer": answer, "meta": {"answers": count}} if count > 1 else {"answer": answer}


def generic(mapping: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """An adapter from a recipe's field mapping: `question_field` (one field, or several joined by a
    newline), `answer_field` and `answer_type` (`text`, or `number`: see `fields.number_answer`); for multiple
    choice `choices_field` plus the correct option in `letter_field` (or `answer_field`), as a letter or, with
    `choice_index` 0 or 1, an index; and `meta_fields` (the source fields the row keeps)."""
    question, answer = mapping.get("question_field") or "question", mapping.get("answer_field") or "answer"
    choices_field, letter_field = mapping.get("choices_field"), mapping.get("letter_field") or answer
    answer_type, index_base = mapping.get("answer_type") or "text", mapping.get("choice_index")
    meta_fields = tuple(mapping.get("meta_fields") or ())

    def adapt(record: dict[str, Any]) -> dict[str, Any]:
        prompt = joined_text(record, question)
        if choices_field:
            options = record.get(choices_field)
            if not isinstance(options, list) or not options:
                raise ValueError(f"field {choices_field!r} missing or not a list")
            choices = [strip_option_label(str(o)) for o in options]
            fields = {"choices": choices, "letter": _choice_letter(record.get(letter_field), index_base)}
        else:
            fields = _gold(record, answer, answer_type)
        gold_meta = fields.pop("meta", {})
        if gold_meta.get("answers"):  # several unknowns: say how to write them
            prompt = f"{prompt}\n{MULTI_ANSWER_HINT[language(prompt)]}"
        return {"prompt": prompt, "meta": {**kept(record, meta_fields), **gold_meta}, **fields}

    return adapt


ADAPTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "gsm8k": gsm8k,
    "math": math,
    "aqua": aqua,
    "mmlu": mmlu,
    "tal": tal,
    "mathqa_mc": mathqa_mc,
    "arc_mc": arc_mc,
}
# The verifier a source's rows name unless its recipe entry says otherwise: `exact` where the golds are words
# (ARC's converted options), `math` for anything written as maths.
DEFAULT_VERIFIER = {
    "gsm8k": "numeric",
    "math": "math",
    "aqua": "math",
    "mmlu": "math",
    "tal": "math",
    "mathqa_mc": "math",
    "arc_mc": "exact",
    "generic": "math",
}
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
    record: dict[str, Any],
    index: int,
    source: str,
    adapter: Callable[..., dict[str, Any]],
    verifier: str,
    license: str = "",
) -> dict[str, Any]:
    """One source record -> one candidate (a malformed record -> a candidate with its drop reason); the
    source's `license` goes into the row's meta."""
    try:
        fields = adapter(record)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        return candidate(source, index, drop=f"malformed: {exc}")
    if license:
        fields["meta"] = {**fields.get("meta", {}), "license": license}
    return candidate(source, index, verifier=verifier, **fields)


def prompt_row(row: dict[str, Any], k: int | None = None) -> PromptRow:
    """A pipeline candidate as a row of the prompt-set schema (what the trainer and `rlvr eval` read); a
    converted multiple-choice item keeps its options and letter in meta. With difficulty, `solved` of `k`
    (of the row's own `attempts` when sampling stopped early)."""
    meta = json.loads(row["meta"])
    if row["choices"]:
        meta = {**meta, "mc_letter": row["letter"], "mc_options": row["choices"]}
    solved = row.get("solved") if k is not None else None
    k = row.get("attempts") or k  # early stopping: solved of the attempts made
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
