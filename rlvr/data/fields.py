"""Reading one field of a source record: text, option labels, and golds written as numbers.

Pure functions shared by the builder's adapters (`sources.py`, `mc_formats.py`). The word-problem sets write
one number in many ways — `18.0`, `((1)/(3))`, `2((1)/(3))`, `(11/20)`, `50％`, `9 (apples)`, lists of
several unknowns — and `number_answer` maps each to one string the `math` verifier checks; anything else (an
expression such as `525/7` asked as "the formula", a time, a name) raises `NotANumber`, which the adapter
turns into the drop reason `answer_not_a_number`. Every regular expression here is linear (no nested
quantifiers).
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from verifiers.normalize import mixed_value

LETTERS = "ABCDEFGHIJ"
_OPTION_LABEL = re.compile(r"^\s*[(（]?([A-Ja-j])\s*[).:）．：、]\s*")
# full-width ASCII (U+FF01..U+FF5E) -> ASCII, the ideographic space and the Chinese full stop and comma
_HALFWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20, 0x3002: 0x2E, 0x3001: 0x2C}
_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
# a run of spaces with a CJK character or CJK punctuation on both sides (word-segmented Chinese)
_SEGMENT_SPACE = re.compile(rf"(?<=[{_CJK}])[ \t]+(?=[{_CJK}])")
_HAS_CJK = re.compile(rf"[{_CJK}]")
_DECIMAL = re.compile(r"[-+]?\d+(?:\.\d+)?")
_FRACTIONS = (
    re.compile(r"([-+]?\d+)?\(\((\d+)\)/\((\d+)\)\)"),  # Math23K: ((1)/(3)), 2((1)/(3))
    re.compile(r"([-+]?\d+)?\((\d+)/(\d+)\)"),  # Ape210K: (11/20), 2(1/3)
    re.compile(r"()([-+]?\d+)/(\d+)"),  # 3/4
)
MIXED_NUMBER = re.compile(r"([-+]?\d+) (\d+)/(\d+)")  # `7 1/2`
_UNIT_IN_PARENTHESES = re.compile(r"\s*\([^()\d]*\)$")  # ASDiv: `9 (apples)`, not `(11/20)`
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_FLOAT_DIGITS = 7  # a float with more decimals than this is a rounded fraction (2.6666666666666665)

MULTI_ANSWER_HINT = {
    "en": "Give all the answers in one \\boxed{}, separated by commas.",
    "zh": "（把所有答案用逗号隔开，写在同一个 \\boxed{} 里。）",
}


class NotANumber(ValueError):
    """A gold that should be a number is not one of the number forms `number_answer` reads."""


def text_field(record: dict[str, Any], field: str) -> str:
    """A non-empty string field; ValueError (the record is malformed) otherwise."""
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {field!r} missing or not a non-empty string")
    return value


def joined_text(record: dict[str, Any], fields: str | list[str]) -> str:
    """One field, or several (e.g. a passage and its question) joined by a newline; empty ones are skipped
    but at least one must hold text."""
    if isinstance(fields, str):
        return text_field(record, fields)
    parts = [str(record[f]).strip() for f in fields if isinstance(record.get(f), str) and record[f].strip()]
    if not parts:
        raise ValueError(f"fields {fields} missing or empty")
    return "\n".join(parts)


def kept(record: dict[str, Any], fields: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The source fields a row keeps in meta (those present and not empty)."""
    return {f: record[f] for f in fields if record.get(f) not in (None, "")}


def halfwidth(text: str) -> str:
    """Full-width digits, letters and punctuation (`５０％`, `（`, `，`) as their ASCII forms."""
    return text.translate(_HALFWIDTH)


def desegment(text: str) -> str:
    """Word-segmented Chinese (`某校 1 初 年级 （ 1 ） 班`) without the spaces between CJK characters."""
    return _SEGMENT_SPACE.sub("", text)


def language(text: str) -> str:
    """`zh` when the text holds any CJK character, else `en`."""
    return "zh" if _HAS_CJK.search(text) else "en"


def strip_option_label(option: str) -> str:
    """`C)25` -> `25`, `(b) 7 km` -> `7 km`, `A.The blood` -> `The blood`."""
    return _OPTION_LABEL.sub("", option, count=1).strip()


def _float_text(value: float) -> str:
    if value.is_integer():
        return str(int(value))
    text = repr(value)
    if len(text.partition(".")[2]) > _FLOAT_DIGITS:  # 2.6666666666666665 -> 8/3
        fraction = Fraction(value).limit_denominator(1000)
        if abs(float(fraction) - value) < 1e-9:
            return f"{fraction.numerator}/{fraction.denominator}"
    return text


def _fraction_text(whole: str | None, numerator: str, denominator: str) -> str:
    if int(denominator) == 0:
        raise NotANumber("zero denominator")
    if whole:
        value = mixed_value(whole, numerator, denominator)
    else:
        value = Fraction(int(numerator), int(denominator))
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def number_answer(value: Any) -> str:
    """One number as the `math` verifier's gold: `18.0` -> `18`, `((1)/(3))` -> `1/3`, `2((1)/(3))` and
    `2 1/3` -> `7/3`, `50％` -> `50%`, `1,200` -> `1200`, `9 (apples)` -> `9`; NotANumber for anything
    else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise NotANumber(f"a {type(value).__name__}")
    if isinstance(value, int | float):
        return _float_text(float(value)) if isinstance(value, float) else str(value)
    text = _UNIT_IN_PARENTHESES.sub("", halfwidth(value).strip())
    mixed = MIXED_NUMBER.fullmatch(text)
    if mixed:
        return _fraction_text(*mixed.groups())
    text = text.replace(" ", "")
    if _THOUSANDS.fullmatch(text.lstrip("-+")):
        text = text.replace(",", "")
    percent = "%" if text.endswith("%") else ""
    body = text.removesuffix("%")
    if _DECIMAL.fullmatch(body):
        body = body.lstrip("+")
        if len(body.partition(".")[2]) > _FLOAT_DIGITS:  # `10.333333333333334` as text
            return _float_text(float(body)) + percent
        return (body.rstrip("0").rstrip(".") if "." in body else body) + percent
    for pattern in _FRACTIONS:
        match = pattern.fullmatch(body)
        if match and not percent:
            return _fraction_text(*match.groups())
    raise NotANumber(value[:40])


def numbers_answer(value: Any, separator: str = ";") -> tuple[str, int]:
    """A gold of one or several numbers (a JSON list, or text split at `separator`) and how many there are.

    Several become `a, b`, which the `math` verifier reads as a set: the answer is right when it holds the
    same values in any order (the sources do not say in which order the unknowns are listed)."""
    if isinstance(value, str):
        value = [part for part in value.split(separator) if part.strip()]
    if not isinstance(value, list):
        value = [value]
    numbers = [number_answer(v) for v in value]
    return ", ".join(numbers), len(numbers)
