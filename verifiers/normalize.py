"""String normalisation of answers and exact reading of plain numbers.

`normalize_answer` maps the many ways of writing one answer to one string (`\\dfrac12` → `\\frac{1}{2}`,
`\\text{13}` → `13`, `28\\%` → `28`, `30^\\circ` → `30`, `5\\text{ cm}` → `5`). `to_fraction` reads integers,
decimals and simple fractions exactly, so `0.5` equals `\\frac12` and `1/2004!`-style near misses never
become equal through rounding. Nothing here evaluates text.
"""

from __future__ import annotations

import re
from fractions import Fraction

_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|\\quad|\\qquad|~|\\displaystyle|\\left|\\right|\\big|\\Big")
_TEXT_COMMANDS = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\s*degrees?\b")
_PERCENT = re.compile(r"\\%|%|\s*percent\b")
_UNIT_AFTER_NUMBER = re.compile(r"^([-+]?\d[\d.,]*)\s+(?:[a-zA-Z]+\.?\s*)+$")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\}|[a-zA-Z])")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(?:\(([^()]*)\)|(\d+|[a-zA-Z]))")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_INTEGER_OR_DECIMAL = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)$")
_SIMPLE_FRACTION = re.compile(r"^([-+]?)\\frac\{([-+]?\d+)\}\{([-+]?\d+)\}$|^([-+]?\d+)\s*/\s*([-+]?\d+)$")
_MAX_DIGITS = 4000  # exact reading of longer numerals is refused: nobody's answer is that long
_BASE_SUBSCRIPT = re.compile(r"_\{(\d+)\}")
BASE_NUMBER = re.compile(r"^-?[0-9A-Z]+_\d+$")  # `1101_2`: digits in base 2, compared as written
_PREFIX_VARIABLE = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*(?:=|\\in)\s*(?!.*(?:=|\\in))")


def _braced_arg(arg: str) -> str:
    return arg if arg.startswith("{") else "{" + arg + "}"


def fix_shorthand(text: str) -> str:
    """`\\frac12` → `\\frac{1}{2}`, `\\sqrt2` / `\\sqrt(2)` → `\\sqrt{2}`, `\\dfrac` → `\\frac`."""
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _FRAC_SHORT.sub(lambda m: "\\frac" + _braced_arg(m.group(1)) + _braced_arg(m.group(2)), text)
    return _SQRT_SHORT.sub(lambda m: "\\sqrt{" + (m.group(1) or m.group(2)) + "}", text)


def _unwrap_text(match: re.Match[str]) -> str:
    return match.group(1)


def normalize_answer(text: str, *, drop_variable: bool = True) -> str:
    """One canonical string per answer, for the first (cheap) comparison layer and for exact matching.

    With `drop_variable`, a leading `x =` or `x \\in` is removed, so `x = 3` matches `3`.
    """
    text = text.strip().rstrip(".").strip().strip("$").strip()
    text = text.replace("\\(", "").replace("\\)", "").replace("\\[", "").replace("\\]", "")
    text = text.replace("\\$", "").replace("{,}", ",")  # currency `\$20` is 20; `10{,}000` is 10,000
    text = _SPACING.sub(" ", text)
    text = fix_shorthand(text)
    text = _DEGREES.sub("", text)
    text = _PERCENT.sub("", text)
    previous = None
    while previous != text:  # nested \text{\textbf{..}}
        previous = text
        text = _TEXT_COMMANDS.sub(_unwrap_text, text)
    text = re.sub(r"\s+", " ", text).strip().rstrip(".").strip()
    unit = _UNIT_AFTER_NUMBER.match(text)
    if unit:
        text = unit.group(1)
    if drop_variable:
        text = _PREFIX_VARIABLE.sub("", text)
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    return _BASE_SUBSCRIPT.sub(r"_\1", text.replace(" ", ""))


def to_fraction(text: str) -> Fraction | None:
    """The exact value of an integer, decimal or simple fraction (`-3`, `0.25`, `1/4`), or None."""
    text = text.strip()
    if len(text) > _MAX_DIGITS:
        return None
    if text.startswith("+"):
        text = text[1:]
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    if _INTEGER_OR_DECIMAL.match(text):
        return Fraction(text if not text.endswith(".") else text[:-1])
    match = _SIMPLE_FRACTION.match(text)
    if not match:
        return None
    if match.group(2):
        sign, numerator, denominator = match.group(1), match.group(2), match.group(3)
    else:
        sign, numerator, denominator = "", match.group(4), match.group(5)
    if int(denominator) == 0:
        return None
    value = Fraction(int(numerator), int(denominator))
    return -value if sign == "-" else value
