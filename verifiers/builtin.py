"""The built-in verifiers: `exact`, `numeric`, `math` and `choice`.

Each returns status "ok" / "wrong" / "no_answer" / "parse_error" with the extracted answer, so a reward curve
can be split into "the model answered wrongly" and "the model did not answer in the expected format".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from verifiers.base import Status, Verifier, register_verifier
from verifiers.extract import (
    UnbalancedBraces,
    closing_math,
    closing_number,
    final_answer,
    final_boxes,
    gsm8k_answer,
    last_boxed,
    last_number,
)
from verifiers.limits import TimeUp, time_limit
from verifiers.math_compare import compare
from verifiers.normalize import LIST_COMMA, normalize_answer, strip_delimiters, to_fraction

Check = tuple[Status, str | None, str | None]
EMPTY_REFERENCE = "the reference answer is empty"
_EMPTY_BOX = re.compile(r"\\(?:boxed|fbox)\s{0,8}\{\s{0,8}\}")
COMPARE_LIMIT_S = 0.8  # wall-clock bound on one comparison, where signals work (inline, pool workers)


def _empty(reference: str) -> bool:
    """A gold with nothing to compare: blank, `$$`, `\\(\\)`, or only empty boxes."""
    if len(reference) > 40:  # a gold this long holds something; the common case stays cheap
        return False
    return not strip_delimiters(_EMPTY_BOX.sub("", reference)).strip(" $")


@register_verifier("exact")
class ExactVerifier(Verifier):
    """Normalised string match of the final answer (last box, else "the answer is", else the whole response).

    Normalisation strips whitespace, surrounding `$`, `\\text{}` wrappers and a final period; `case_sensitive`
    (default False) keeps letter case significant.
    """

    name = "exact"
    reads_final_section = True

    def __init__(self, *, case_sensitive: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case_sensitive = case_sensitive

    def _canonical(self, text: str) -> str:
        text = normalize_answer(text, drop_variable=False)
        return text if self.case_sensitive else text.casefold()

    def check(self, response: str, reference: str, sample: Mapping[str, Any] | None) -> Check:
        if _empty(reference):
            return "error", None, EMPTY_REFERENCE
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
    """A plain number from an answer: `$1,234`, `\\$9{,}500`, `€18`, `72,` (a sentence's comma), `42.0`,
    `-3 apples`, `\\frac{1}{2}`, `50\\%` (as 50). A list (`18, 19`, `1, 200`) is no number."""
    if LIST_COMMA.search(text):
        return None
    cleaned = normalize_answer(text.replace("\\$", "").replace("$", ""))  # `\\$` first: never `\\18`
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
    reads_final_section = True

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


@register_verifier("math")
class MathVerifier(Verifier):
    """Competition maths: the boxes of the final answer (`\\boxed{}`/`\\fbox{}`, brace-matched; several boxes
    together when the gold lists several values), an "answer is X" / "Answer: X" after them, `#### X`, or a
    response that is only maths.

    Layered comparison, cheapest first (`verifiers.math_compare`): normalised strings; exact rationals
    (`0.5` = `\\frac12`, never rounded); symbolic equivalence of the parsed LaTeX; the shapes real answers
    take (equations around the value, lists in any order, inequalities as intervals); then math-verify as a
    guarded second opinion. Model text is parsed by grammars and never executed.
    """

    name = "math"
    reads_final_section = True

    def check(self, response: str, reference: str, sample: Mapping[str, Any] | None) -> Check:
        if _empty(reference):
            return "error", None, EMPTY_REFERENCE  # a data problem, not a wrong answer
        try:
            answer = final_answer(response) or closing_math(response) or closing_number(response)
            several = response.count("\\boxed") + response.count("\\fbox") > 1
            boxes = final_boxes(response) if answer is not None and several else []
            if len(set(boxes)) > 1 and boxes[-1] == answer:
                # boxes joined by connectives answer together: the list a gold of several values asks for,
                # against a single gold a hedge (`\\boxed{11} or \\boxed{12}`); one box twice is one answer
                answer = ", ".join(boxes)
        except UnbalancedBraces as exc:
            return "parse_error", None, str(exc)
        if answer is None or not answer.strip():
            return "no_answer", None, None
        try:
            with time_limit(COMPARE_LIMIT_S):
                return self.compare(answer, reference), answer, None
        except TimeUp:
            return "timeout", answer, f"comparison over {COMPARE_LIMIT_S:g}s"

    def compare(self, answer: str, reference: str) -> Status:
        """ok/wrong/parse_error for an extracted answer against the gold answer."""
        return compare(answer, reference)
