"""The built-in verifiers: `exact`, `numeric`, `math` and `choice`.

Each returns status "ok" / "wrong" / "no_answer" / "parse_error" with the extracted answer, so a reward curve
can be split into "the model answered wrongly" and "the model did not answer in the expected format".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any

from verifiers.base import Status, Verifier
from verifiers.extract import UnbalancedBraces, answer_is, final_answer, gsm8k_answer, last_boxed, last_number
from verifiers.normalize import BASE_NUMBER, normalize_answer, to_fraction
from verifiers.registry import register_verifier
from verifiers.symbolic import UnsafeExpression, equivalent, parse_latex

Check = tuple[Status, str | None, str | None]


@register_verifier("exact")
class ExactVerifier(Verifier):
    """Normalised string match of the final answer (last box, else "the answer is", else the whole response).

    Normalisation strips whitespace, surrounding `$`, `\\text{}` wrappers and a final period; `case_sensitive`
    (default False) keeps letter case significant.
    """

    name = "exact"

    def __init__(self, *, case_sensitive: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case_sensitive = case_sensitive

    def _canonical(self, text: str) -> str:
        text = normalize_answer(text, drop_variable=False)
        return text if self.case_sensitive else text.casefold()

    def check(self, response: str, reference: str, sample: Mapping[str, Any] | None) -> Check:
        try:
            answer = final_answer(response)
        except UnbalancedBraces as exc:
            return "parse_error", None, str(exc)
        answer = response if answer is None else answer
        if not answer.strip():
            return "no_answer", None, None
        same = self._canonical(answer) == self._canonical(reference)
        return ("ok" if same else "wrong"), answer, None


def read_number(text: str) -> Fraction | None:
    """A plain number from an answer: `$1,234`, `42.0`, `-3 apples`, `\\frac{1}{2}`, `50\\%` (as 50)."""
    cleaned = normalize_answer(text.replace("$", "").replace("\\$", ""))
    value = to_fraction(cleaned)
    if value is None:
        number = last_number(cleaned)
        value = to_fraction(number) if number is not None and number == cleaned.rstrip(".") else None
    return value


@register_verifier("numeric")
class NumericVerifier(Verifier):
    """GSM8K-style numbers: the answer after `####`, else the last `\\boxed{}`, else the last number.

    Compared exactly as rationals after removing thousands separators, `$`, units and percent signs, so
    `42.0` equals `42` and `1,000` equals `1000`.
    """

    name = "numeric"

    def check(self, response: str, reference: str, sample: Mapping[str, Any] | None) -> Check:
        gold = read_number(gsm8k_answer(reference) or reference)
        if gold is None:
            return "error", None, f"reference {reference[:80]!r} is not a number"
        try:
            answer = gsm8k_answer(response) or last_boxed(response) or last_number(response)
        except UnbalancedBraces as exc:
            return "parse_error", None, str(exc)
        if answer is None:
            return "no_answer", None, None
        value = read_number(answer)
        if value is None:
            return "parse_error", answer, "the answer is not a number"
        return ("ok" if value == gold else "wrong"), answer, None


@lru_cache(maxsize=8192)
def _parsed_reference(reference: str) -> Any:
    """Gold answers repeat n times per prompt: parse each once. Returns the tree or the exception."""
    try:
        return parse_latex(reference)
    except ValueError as exc:
        return exc


def _mentions_plus_minus(text: str) -> bool:
    return "\\pm" in text or "\\mp" in text or "±" in text


def _is_relation(text: str) -> bool:
    return "=" in text or "\\in" in text


@register_verifier("math")
class MathVerifier(Verifier):
    """Competition maths: the last `\\boxed{}`/`\\fbox{}` (brace-matched), else "the answer is X".

    Layered comparison, cheapest first: normalised strings; exact rationals (`0.5` = `\\frac12`, never
    rounded); then symbolic equivalence of the parsed LaTeX (expressions, equations, sets, intervals,
    tuples, matrices). Model text is parsed by a grammar and never executed.
    """

    name = "math"

    def check(self, response: str, reference: str, sample: Mapping[str, Any] | None) -> Check:
        try:
            answer = final_answer(response)
        except UnbalancedBraces as exc:
            return "parse_error", None, str(exc)
        if answer is None or not answer.strip():
            return "no_answer", None, None
        return self.compare(answer, reference), answer, None

    def compare(self, answer: str, reference: str) -> Status:
        """ok/wrong/parse_error for an extracted answer against the gold answer."""
        if _mentions_plus_minus(answer) != _mentions_plus_minus(reference):
            return "wrong"  # ±2021 is two answers, 2021 is one
        # `x = 3` matches `3`, but `y = 2x + 1` stays an equation when the gold is one too.
        mine = normalize_answer(answer, drop_variable=not _is_relation(reference))
        gold = normalize_answer(reference, drop_variable=not _is_relation(answer))
        if mine == gold:
            return "ok"
        if BASE_NUMBER.match(mine) or BASE_NUMBER.match(gold):
            return "wrong"  # `1101_2` and `1101_3` are different numbers; the base is part of the answer
        if ":" in mine or ":" in gold:
            return "wrong"  # times and ratios (`9:24`, `4:51 p.m.`) compare as written
        mine_value, gold_value = to_fraction(mine), to_fraction(gold)
        if mine_value is not None and gold_value is not None:
            return "ok" if mine_value == gold_value else "wrong"
        gold_tree = _parsed_reference(gold)
        if isinstance(gold_tree, Exception):
            return "wrong"  # an unparseable gold only matches as a string, which failed above
        try:
            mine_tree = parse_latex(mine)
        except UnsafeExpression:
            return "wrong"
        except ValueError:
            return "parse_error"
        try:
            return "ok" if equivalent(mine_tree, gold_tree) else "wrong"
        except (TypeError, ValueError, AttributeError, ArithmeticError, RecursionError):
            return "wrong"  # comparisons sympy cannot decide count as different


_LETTERS = "ABCDEFGHIJ"
_LETTER_ANSWER = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*:?\s*\(?\s*([A-J])\s*\)?(?![A-Za-z])|\(([A-J])\)|^\s*([A-J])\s*[).:]?\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def _options(sample: Mapping[str, Any] | None) -> dict[str, str]:
    """Option letter → text from `sample["options"]` or `sample["choices"]` (a mapping or a list)."""
    raw = (sample or {}).get("options") or (sample or {}).get("choices") or {}
    if isinstance(raw, Mapping):
        return {str(k).strip().upper(): str(v) for k, v in raw.items()}
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        texts = [re.sub(r"^\(?[A-J]\)\s*", "", str(v)) for v in raw[: len(_LETTERS)]]  # "C)25" -> "25"
        return dict(zip(_LETTERS, texts, strict=False))
    return {}


@register_verifier("choice")
class ChoiceVerifier(Verifier):
    """Multiple choice: a letter A–J ("(B)", "Answer: B", `\\boxed{B}`) or the text of an option.

    The reference is the correct letter, or the correct option's text when `sample` carries the options.
    """

    name = "choice"

    def check(self, response: str, reference: str, sample: Mapping[str, Any] | None) -> Check:
        options = _options(sample)
        gold = reference.strip().strip("()").upper()
        if gold not in _LETTERS or len(gold) != 1:
            by_text = {normalize_answer(v).casefold(): k for k, v in options.items()}
            gold = by_text.get(normalize_answer(reference).casefold(), "")
        if not gold:
            return "error", None, f"reference {reference[:40]!r} is neither a letter nor one of the options"
        try:
            boxed = last_boxed(response)
        except UnbalancedBraces as exc:
            return "parse_error", None, str(exc)
        candidate = boxed if boxed is not None else answer_is(response)
        letter = self._letter(candidate) if candidate is not None else None
        if letter is None:
            matches = _LETTER_ANSWER.findall(response[-2000:])
            letter = next((m for m in reversed(["".join(g) for g in matches]) if m), None)
        if letter is None and candidate is not None:
            by_text = {normalize_answer(v).casefold(): k for k, v in options.items()}
            letter = by_text.get(normalize_answer(candidate).casefold())
        if letter is None:
            return "no_answer", candidate, None
        letter = letter.upper()
        return ("ok" if letter == gold else "wrong"), letter, None

    @staticmethod
    def _letter(text: str) -> str | None:
        text = normalize_answer(text, drop_variable=False)
        match = re.fullmatch(r"\(?([A-Ja-j])\)?[.:]?", text) or re.match(r"\(?([A-J])\)", text)
        return match.group(1) if match else None
