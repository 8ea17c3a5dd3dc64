"""math-verify's own test cases (tests/data/math_verify_cases.jsonl) as regression cases for rlvr's `math`.

Each case must get math-verify's expected verdict, except the ones in RULED_DIFFERENTLY (keyed by upstream
file, line and expected verdict), where rlvr rules the other way on purpose; the reason is given beside each,
and the test checks that rlvr still rules that way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifiers import get_verifier

pytestmark = pytest.mark.usefixtures("generous_verifier_limits")  # correctness, not speed

CASES = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "math_verify_cases.jsonl").read_text().splitlines()
]
_COMMA_DECIMAL = (
    "a decimal comma: rlvr reads `1,22` as a list (or thousands), never as 1.22, so lists stay lists"
)
_NO_CUE = (
    "an answer never stated as one (no box, no 'answer', no closing 'Therefore ... is', no number or maths "
    "closing the last sentence): math-verify's plain-text mode takes the last number or formula of any text; "
    "rlvr does not guess, which keeps unfinished responses from scoring"
)
_ROUNDED = (
    "a rounded decimal: math-verify rounds to `precision` digits; rlvr compares numbers exactly, so "
    "`\\frac{1}{2004!}` and `\\frac{1}{2006!}` (or 0.0833 and 1/12) stay different"
)
_LINE_BREAKS = "an answer across line breaks inside `$...$` or `\\(...\\)`: rlvr reads it (as the issue asks)"
RULED_DIFFERENTLY = {
    ("test_all.py", 70, 1): _COMMA_DECIMAL,
    ("test_all.py", 71, 1): _COMMA_DECIMAL,
    ("test_all.py", 72, 1): _COMMA_DECIMAL,
    ("test_all.py", 87, 1): _COMMA_DECIMAL,
    ("test_all.py", 627, 1): _NO_CUE,
    ("test_all.py", 728, 1): _NO_CUE,
    ("test_all.py", 132, 0): _LINE_BREAKS,
    ("test_all.py", 133, 0): _LINE_BREAKS,
    ("test_all.py", 565, 1): _ROUNDED,
    ("test_all.py", 586, 1): _ROUNDED,
    ("test_all.py", 605, 1): _ROUNDED,
    ("test_all.py", 921, 1): _ROUNDED,
    (
        "test_all.py",
        901,
        1,
    ): "`\\\\le` in the prediction is a LaTeX line break and `le`: a typo upstream, not `\\le`",
    ("test_numina_cases.py", 121, 1): "`1orW(x)`: 'or' glued to its neighbours is not read as a connective",
    ("test_strict.py", 8, 1): "`f(x)` against `f(y)`, strict=False: rlvr is always strict about variables",
    (
        "test_yujianll.py",
        28,
        1,
    ): "`1 - 1/e` against `1 + 1/e`: a known math-verify bug its test pins; different",
}


def _key(case: dict) -> tuple[str, int, int]:
    return case["source"].split("/")[1].split("::")[0], case["line"], case["expected"]


def _id(case: dict) -> str:
    return f"{case['source'].split('/')[-1]}:{case['line']}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_math_verify_case(case: dict) -> None:
    result = get_verifier("math").verify(case["prediction"], case["gold"])
    key = _key(case)
    expected = bool(case["expected"])
    if key in RULED_DIFFERENTLY:
        expected = not expected  # rlvr's ruling; the reason is in RULED_DIFFERENTLY
    assert result.correct == expected, (RULED_DIFFERENTLY.get(key), result)


def test_every_difference_names_a_case() -> None:
    keys = {_key(case) for case in CASES}
    assert set(RULED_DIFFERENTLY) <= keys
    assert len(CASES) == 269


@pytest.mark.parametrize(
    ("response", "letter"),
    [  # math-verify's tests/test_string_extraction.py, through rlvr's `choice`
        ("The answer is A.", "A"),
        ("Final answer is B", "B"),
        ("The answer is U.", None),  # U is no option letter for rlvr (A-J)
        ("No valid answer here", None),
    ],
)
def test_math_verify_letter_cases(response: str, letter: str | None) -> None:
    result = get_verifier("choice").verify(response, letter or "A")
    assert result.correct == (letter is not None) and (result.extracted == letter or letter is None)
