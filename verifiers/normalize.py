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
# No pattern here has two quantifiers that can match the same text side by side (`\s*` before a word,
# `(word\s*)+`, `\d+\.?\d*`): Python's regex engine backtracks, and such pairs make it quadratic or worse.
_DEGREES = re.compile(r"\^\s*(?:\{\s*)?\\circ\s*\}?|°|\\degree|\bdegrees?\b")
_PERCENT = re.compile(r"\\%|%|\bpercent(?:age)?\b|\bpct\b")
_LEADING_NUMBER = re.compile(r"[-+]?\d[\d.,]*")
_PROSE_TAIL = re.compile(r"[a-zA-Z][a-zA-Z.,;:!?' ]*")  # words and punctuation, no digits or maths
_FRAC_SHORT = re.compile(r"\\frac\s*(\d|\{[^{}]*\})\s*(\d|\{[^{}]*\}|[a-zA-Z])")
_SQRT_SHORT = re.compile(r"\\sqrt\s*(?:\(([^()]*)\)|(\d+|[a-zA-Z]))")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_INTEGER_OR_DECIMAL = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)$")
_SIMPLE_FRACTION = re.compile(r"^([-+]?)\\frac\{([-+]?\d+)\}\{([-+]?\d+)\}$|^([-+]?\d+)\s*/\s*([-+]?\d+)$")
_MAX_DIGITS = 4000  # exact reading of longer numerals is refused: nobody's answer is that long
_BASE_SUBSCRIPT = re.compile(r"_\{(\d+)\}")
BASE_NUMBER = re.compile(r"^-?[0-9A-Z.]+_\d+$")  # `1101_2`, `0.0011_2`: digits in base 2, as written
_WHITESPACE = re.compile(r"\s+")
_MATH_DELIMITER = re.compile(r"(?<!\\)\\[()\[\]]")  # `\(`, `\)`, `\[`, `\]`, but not after `\\`
_MAX_TEXT_NESTING = 8
_PROGRAM_PI = re.compile(r"(?<![\\a-zA-Z])pi(?![a-zA-Z])")
_PROGRAM_SQRT = re.compile(r"(?<![\\a-zA-Z])sqrt(?=\s*[({\d])")
_PROGRAM_EXP = re.compile(r"(?<![\\a-zA-Z])exp\(([^()]{1,200})\)")
# A mixed number: an integer, then (directly, or after one space) a proper fraction, glued to no name,
# decimal, power or product (`x2\\frac12`, `1.5\\frac12`, `2\\frac12\\pi`, `2\\frac12^2` stay as written).
_MIXED_BEFORE = r"(?<![\w.}\\)^_*/!])(?<!\d,)([-+]?)(\d+)"
_MIXED_AFTER = r"(?![\w.({^_\[]|\\(?!cdot|times|div))"
_MIXED_LATEX = re.compile(_MIXED_BEFORE + r" ?\\frac\{(\d+)\}\{(\d+)\}" + _MIXED_AFTER)  # `2\\frac{1}{2}`
MIXED_NUMBER = re.compile(_MIXED_BEFORE + r" (\d+)/(\d+)" + _MIXED_AFTER.replace("({", "({/"))  # `7 1/2`
_DIGIT_GAP = re.compile(r"(?<=\d) (?=\d)(?!\d{3}(?!\d))")  # `2 3/2`, `1 2`; not `1 000` (thousands)
_MAX_MIXED_DIGITS = 40
_PREFIX_VARIABLE = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?\s*(?:=|\\in)\s*(?!.*(?:=|\\in))")
# Money: `\\$18`, `18\\$`, `€18`, `18 €`, `\\pounds 18`, `USD 18` are 18 (an unescaped `$` is a maths
# delimiter here; `strip_delimiters` and the callers remove it). Bounded gaps only.
_CURRENCY = re.compile(
    r"\\\$|[€£¥₹]|\\(?:textdollar|texteuro|euro|textsterling|pounds|textyen|yen)(?![a-zA-Z])(?:\s?\{\})?"
)
_CURRENCY_CODE = re.compile(r"^([-+]?)\s{0,2}(?:USD|EUR|GBP)\s{0,2}(?=[-+]?\s?\d)")
# A unit glued to a number or a space after it, in shapes `strip_units` (words only) does not take: `12m²`,
# `15 m^2`, `3cm`, `2kg`. A letter alone is a unit only with a power of a length (`5x²` stays algebra).
_DECIMAL = r"([-+]?\d[\d,]*(?:\.\d+)?)"  # a number with thousands commas, captured
GLUED_UNIT = r"(?:(?:[ckd]?m|ft|in)(?:[²³]|\^\{?[23]\}?)|[ckm]m|kg|mg|m[lL]|lbs?|oz|hrs?|mph)"
_NUMBER_WITH_UNIT = re.compile(_DECIMAL + " ?" + GLUED_UNIT)
# Words after a number that change its value or make it part of a relation: never a unit to drop.
VALUE_WORDS = re.compile(
    r"(?<!\\)\b(?:pi|squared|cubed|million|billion|trillion|thousand|hundred|dozen|times|less|more|fewer|greater|"
    r"smaller|larger|than|plus|minus|over)\b",
    re.I,
)
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "trillion": 10**12}
_SCALED = re.compile(_DECIMAL + r" (hundred|thousand|million|billion|trillion)\b(.*)", re.I)
_POWER_WORD = re.compile(_DECIMAL + r" (squared|cubed)", re.I)
_LOST_DOLLAR = re.compile(r"(?<!\\)\\(?=\d)")  # `\20`: a `\$20` whose `$` was taken for a delimiter
LIST_COMMA = re.compile(r"\d,[ \t]+\d")  # `32, 349` is two numbers; `32,349` and `32,\! 349` are one


def _braced_arg(arg: str) -> str:
    return arg if arg.startswith("{") else "{" + arg + "}"


def fix_shorthand(text: str) -> str:
    """`\\frac12` → `\\frac{1}{2}`, `\\sqrt2` / `\\sqrt(2)` → `\\sqrt{2}`, `\\dfrac` → `\\frac`, and the
    programming spellings `pi`, `sqrt(2)`, `exp(16)` → `\\pi`, `\\sqrt{2}`, `e^{16}` (docs/verifiers.md)."""
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cfrac", "\\frac")
    if "pi" in text or "sqrt" in text or "exp" in text:
        text = _PROGRAM_PI.sub(r"\\pi", text)
        text = _PROGRAM_SQRT.sub(r"\\sqrt", text)
        text = _PROGRAM_EXP.sub(lambda m: "e^{" + m.group(1) + "}", text)
    text = _FRAC_SHORT.sub(lambda m: "\\frac" + _braced_arg(m.group(1)) + _braced_arg(m.group(2)), text)
    return _SQRT_SHORT.sub(lambda m: "\\sqrt{" + (m.group(1) or m.group(2)) + "}", text)


def _unwrap_text(match: re.Match[str]) -> str:
    return match.group(1)


def mixed_value(whole: str, numerator: str, denominator: str) -> Fraction:
    """The value of the mixed number `whole numerator/denominator`: `7 1/2` is 15/2, `-2 1/2` is -5/2 (the
    sign belongs to the whole number). One reading, shared with the dataset builder (`rlvr.data.fields`)."""
    fraction = Fraction(int(numerator), int(denominator))
    return -(abs(int(whole)) + fraction) if whole.strip().startswith("-") else int(whole) + fraction


def _mixed_as_fraction(match: re.Match[str]) -> str:
    sign, whole, numerator, denominator = match.groups()
    if max(map(len, (whole, numerator, denominator))) > _MAX_MIXED_DIGITS:
        return match.group(0)
    if not 0 < int(numerator) < int(denominator):
        return match.group(0)  # an improper fraction after a number: `2\\frac{3}{2}` is a product
    value = mixed_value(sign + whole, numerator, denominator)
    return ("-" if value < 0 else "") + f"\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def read_mixed_numbers(text: str) -> str:
    """`2\\frac{1}{2}` → `\\frac{5}{2}`, `7 1/2` → `\\frac{15}{2}`, `-2\\frac12` → `-\\frac{5}{2}`: a mixed
    number is its value, never the product 2·½ or the concatenation 71/2 (docs/verifiers.md). Expects
    `\\frac` with braced digits (`fix_shorthand` first); `2\\pi`, `2 \\cdot \\frac12`, `x\\frac12` and
    `2\\frac{3}{2}` are kept."""
    if "/" in text:
        text = MIXED_NUMBER.sub(_mixed_as_fraction, text)
    return _MIXED_LATEX.sub(_mixed_as_fraction, text) if "\\frac" in text else text


def strip_units(text: str) -> str:
    """`18 dollars is what she makes!` → `18`, `\\frac{11}{15} days` → `\\frac{11}{15}`: a number or a closed
    expression followed only by words (no digits, no maths) is that number or expression. Words that change
    the value are no unit (`3 million` is 3000000, `2 squared` is 4, `5 less than y` stays as written).
    Anchored, linear matches and one scan from the end, instead of one pattern that backtracks over them."""
    scaled = _SCALED.fullmatch(text)
    if scaled:
        value = to_fraction(scaled.group(1)) if len(scaled.group(1)) < 40 else None
        if value is not None:
            value *= _SCALES[scaled.group(2).lower()]
            text = (str(value.numerator) if value.denominator == 1 else str(float(value))) + scaled.group(3)
    power = _POWER_WORD.fullmatch(text)
    if power:
        return power.group(1) + ("^2" if power.group(2).lower() == "squared" else "^3")
    if VALUE_WORDS.search(text):
        return text
    number = _LEADING_NUMBER.match(text)
    if number and number.end() < len(text) and text[number.end()] == " ":
        rest = text[number.end() + 1 :]
        if _PROSE_TAIL.fullmatch(rest):
            return number.group(0).rstrip(".,")
    end = len(text)
    while end > 0 and (text[end - 1].isalpha() or text[end - 1] in " .'"):
        end -= 1
    closed = 0 < end < len(text) and text[end - 1] == "}" and text[end] == " "
    if closed and _PROSE_TAIL.fullmatch(text[end + 1 :]):
        return text[:end]
    return text


def has_percent(text: str) -> bool:
    """Whether the answer is written as a percentage (`28\\%`, `28%`, `28 percent`)."""
    return _PERCENT.search(text) is not None


def normalize_answer(text: str, *, drop_variable: bool = True) -> str:
    """One canonical string per answer, for the first (cheap) comparison layer and for exact matching.

    With `drop_variable`, a leading `x =` or `x \\in` is removed, so `x = 3` matches `3`.
    """
    text = strip_delimiters(text)
    text = _CURRENCY_CODE.sub(r"\1", _CURRENCY.sub("", text))  # `\\$20`, `€20`, `USD 20` are 20
    text = _LOST_DOLLAR.sub("", text)
    text = text.replace("{,}", ",").replace(",\\!", ",")  # `10{,}000`, `10,\\!000`
    text = _SPACING.sub(" ", text)
    text = fix_shorthand(text)
    text = _DEGREES.sub("", text)
    text = _PERCENT.sub("", text)
    for _ in range(_MAX_TEXT_NESTING):  # nested \\text{\\textbf{..}}
        unwrapped = _TEXT_COMMANDS.sub(_unwrap_text, text)
        if unwrapped == text:
            break
        text = unwrapped
    text = read_mixed_numbers(_WHITESPACE.sub(" ", text).strip().rstrip(".").strip())
    text = strip_units(text)
    unit = _NUMBER_WITH_UNIT.fullmatch(text)
    text = unit.group(1) if unit else text
    if drop_variable:
        text = _PREFIX_VARIABLE.sub("", text)
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    text = _DIGIT_GAP.sub(",", text)  # digits a space apart are never one number, but for thousands
    return _BASE_SUBSCRIPT.sub(r"_\1", text.replace(" ", ""))


def strip_delimiters(text: str) -> str:
    """The answer without surrounding `$`/`$$`, `\\(...\\)`, `\\[...\\]`, a final period, comma or semicolon
    (`#### 72,`) and whitespace. An escaped `\\$` is money, not a delimiter: `18\\$` keeps it. A line break
    `\\\\` followed by a bracket (a matrix row `\\\\(2)`) is no delimiter."""
    text = _drop_final_comma(text.strip()).rstrip(".").strip()
    unwrapped = text.strip("$").strip()
    if unwrapped.endswith("\\") and text.endswith("$"):
        unwrapped += "$"  # `18\\$`: the `$` was escaped
    text = _drop_final_comma(unwrapped) if unwrapped != text else text  # `$72,$`
    return _MATH_DELIMITER.sub("", text).strip()


def _drop_final_comma(text: str) -> str:
    """`72,` and `72;` → `72`: the punctuation of the sentence the answer ended; `18\\,` (a space) and
    `1, 2, 3, ...` (after the dots) are kept."""
    if text.endswith((",", ";")) and len(text) > 1 and text[-2] not in "\\,;":
        return text[:-1].rstrip()
    return text


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
