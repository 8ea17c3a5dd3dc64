"""The rest of the held-out misses (issue kind 5), each as a kind with its neighbours, and the ambiguous
rulings docs/verifiers.md ("Rulings") states: which way rlvr rules, tested both ways where a policy could farm
the other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifiers import get_verifier

pytestmark = pytest.mark.usefixtures("generous_verifier_limits")  # correctness, not speed

RIGHT, WRONG = True, False

TWICE_BOXED = [
    ("So \\boxed{7}. Checking again, the answer is \\boxed{7}.", "7", RIGHT),
    ("\\boxed{7} so again \\boxed{7}", "7", RIGHT),
    ("\\boxed{7} hmm, actually \\boxed{8}", "7", WRONG),  # the last box is the answer
    ("First \\boxed{7}, recheck \\boxed{7}.", "8", WRONG),
]
ANSWER_DELIMITERS = [
    ("Answer $ 9 $", "9", RIGHT),
    ("Answer \\( 9 \\)", "9", RIGHT),
    ("Answer \\[ 9 \\]", "9", RIGHT),
    ("Answer $$ 9 $$", "9", RIGHT),
    ("Answer $ 8 $", "9", WRONG),
]
INEQUALITIES = [
    ("\\boxed{x >= 5}", "x \\geq 5", RIGHT),
    ("\\boxed{x <= 2}", "x \\leq 2", RIGHT),
    ("\\boxed{x != 3}", "x \\neq 3", RIGHT),
    ("\\boxed{x \\lt 3}", "x < 3", RIGHT),
    ("\\boxed{x \\gt 5}", "x > 5", RIGHT),
    ("\\boxed{-2 \\le x \\le 7}", "x \\in [-2,7]", RIGHT),
    ("\\boxed{-2 < x \\le 7}", "x \\in [-2,7]", WRONG),
    ("\\boxed{x >= 6}", "x \\geq 5", WRONG),
    ("\\boxed{x \\le 3}", "x \\geq 3", WRONG),
]
STATED_SENTENCES = [
    ("Final Answer: The largest $n$ is 34.", "34", RIGHT),
    ("Final Answer: The largest $n$ is 35.", "34", WRONG),
    ("Therefore $x \\geq 5$ is the solution.", "x \\geq 5", RIGHT),
    ("The total is 1,000.99€", "1000.99", RIGHT),  # a unit glued on: the number is whole
    ("So the area is 1,000.99m²", "1000.99", RIGHT),
    ("Final Answer: the area is 1,000.99m²", "1000.99", RIGHT),
    ("Final Answer: the area is 15 m^2.", "15", RIGHT),
    ("Therefore the total cost is 1,001.99€.", "1000.99", WRONG),
    ("We find that $x \\lt 3$.", "x < 3", RIGHT),  # maths closing a sentence that ends
    ("The solution is $x != 5$", "x \\neq 5", RIGHT),  # ... or that introduces it
    (
        "Here is the matrix: $\\begin{pmatrix}0 & 1\\end{pmatrix}$",
        "\\begin{bmatrix}0 & 1\\end{bmatrix}",
        RIGHT,
    ),
    # a bare number in prose, a span that merely stops the text, a value glued to algebra: no answer
    ("We tried 5 cases and 12 of them failed, so", "12", WRONG),
    ("Let us substitute $x=5$", "5", WRONG),
    ("The roots are $5$ and $6$.", "6", WRONG),
    ("The result is 5x²", "5", WRONG),
    # the closing value must be the result, not part of a term, a bound, a range, an assumption or a denial
    ("The total is 5x.", "5", WRONG),
    ("The area is 5π.", "5", WRONG),
    ("So the value is 2 squared.", "2", WRONG),
    ("So the value is 2 squared.", "4", RIGHT),
    ("So the total is 3 million.", "3", WRONG),
    ("So the total is 3 million.", "3000000", RIGHT),
    ("So x is 5 less than y.", "5", WRONG),
    ("So x is greater than 5.", "5", WRONG),
    ("The result is never 12.", "12", WRONG),
    ("The result can't be 12.", "12", WRONG),
    ("So x ranges from 3 to 12.", "12", WRONG),
    ("Its range is 1 to 12.", "12", WRONG),
    ("The area is 25 m^2.", "2", WRONG),
    ("The area is 25 m^2.", "25", RIGHT),
    ("The speed is 12 m/s^2.", "12", RIGHT),
    ("So the result is x^2.", "2", WRONG),
    ("The meeting starts at 4:30 p.m.", "30", WRONG),
    ("The ratio is 3:4.", "4", WRONG),
    ("Suppose $x = 5$.", "5", WRONG),
    ("Let $x = 5$.", "5", WRONG),
    ("First, we substitute $x=5$.", "5", WRONG),
    ("This is false when $x=5$.", "5", WRONG),
    ("We must check whether $x=5$.", "5", WRONG),
    ("The solution is not $x = 5$.", "5", WRONG),
    ("The number is not 10 but 1,000.99€", "1000.99", RIGHT),
    (
        "When multiplying by the identity: $\\begin{pmatrix}1 & 0\\end{pmatrix}$",
        "\\begin{pmatrix}1 & 0\\end{pmatrix}",
        RIGHT,
    ),
]
GROUPINGS = [
    ("\\boxed{(f(x), g(x)) = (x, 2)}", "f(x)=x, g(x)=2", RIGHT),
    ("\\boxed{f(x)=x, g(x)=2}", "(f(x), g(x)) = (x, 2)", RIGHT),
    ("\\boxed{(f(x), g(x)) = (x, 3)}", "f(x)=x, g(x)=2", WRONG),
    ("\\boxed{(f(x), g(x)) = (2, x)}", "f(x)=x, g(x)=2", WRONG),
    ("\\boxed{W(x)=1 or W(x)=-1}", "W(x)=1 \\text{ or } W(x)=-1", RIGHT),
    ("\\boxed{W(x)=1orW(x)=-1}", "W(x)=1 \\text{ or } W(x)=-1", RIGHT),
    ("\\boxed{W(x)=1 or W(x)=1}", "W(x)=1 \\text{ or } W(x)=-1", WRONG),
    ("\\boxed{\\frac{5}{8} = 0.101_2}", "0.101_{2}", RIGHT),
    ("\\boxed{\\frac{5}{8} = 0.111_2}", "0.101_{2}", WRONG),
    ("\\boxed{4:30}", "\\text{4:30 p.m.}", RIGHT),
    ("\\boxed{4:30 \\text{ p.m.}}", "\\text{4:30 p.m.}", RIGHT),
    ("\\boxed{4:30 pm}", "\\text{4:30 p.m.}", RIGHT),
    ("\\boxed{4:30 \\text{ a.m.}}", "\\text{4:30 p.m.}", WRONG),
    ("\\boxed{5:30}", "\\text{4:30 p.m.}", WRONG),
    ("\\boxed{\\{1, 2\\}, \\{5, 6\\}}", "1,2,5,6", RIGHT),
    ("\\boxed{\\{1, 2\\} \\text{ and } \\{5, 6\\}}", "1,2,5,6", RIGHT),
    ("\\boxed{\\{1, 2\\}, \\{5, 7\\}}", "1,2,5,6", WRONG),
    ("\\boxed{\\{1, 2\\}, \\{5\\}}", "1,2,5,6", WRONG),
    ("\\boxed{\\{1, 2\\}, \\{5, 6\\}}", "\\{1, 5\\}, \\{2, 6\\}", WRONG),  # a grouped gold asks for groups
    ("\\boxed{\\20}", "20", RIGHT),  # a `\$20` whose `$` was taken for a delimiter
    ("\\boxed{\\21}", "20", WRONG),
    ("\\boxed{(a, b) = (1, 2)}", "a=1, b=2", RIGHT),
    ("\\boxed{(a, b) = (2, 1)}", "a=1, b=2", WRONG),  # a tuple equation keeps its names
    ("\\boxed{(a, b, c) = (1, 2)}", "a=1, b=2", WRONG),
    ("\\boxed{(a, a) = (1, 2)}", "a=1, b=2", WRONG),
]
# docs/verifiers.md, "Rulings": the ambiguous ones.
RULINGS = [
    ("\\boxed{1011}", "1011_2", RIGHT),  # a dropped base subscript: the digits decide
    ("\\boxed{1011_2}", "1011", RIGHT),
    ("\\boxed{1011_3}", "1011_2", WRONG),  # two bases: two numbers
    ("\\boxed{11}", "1011_2", WRONG),  # the value in base 10 is not what the gold writes
    ("\\boxed{1001}", "1011_2", WRONG),
    ("\\boxed{33.3}", "\\frac{100}{3}", WRONG),  # a rounded answer is not the exact gold
    ("\\boxed{\\frac{100}{3}}", "33.3", WRONG),  # nor the other way: the gold's digits are the answer
    ("\\boxed{33.3}", "33.3", RIGHT),
    (
        "The answer is \\boxed{7}.\n\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.",
        "7",
        RIGHT,
    ),
    ("Put your final answer within \\boxed{}.", "7", WRONG),
    ("Maybe 41, maybe 42, or maybe 43.", "43", WRONG),  # a hedge states none of its values
    ("Maybe 41, maybe 42, or maybe 43.", "41", WRONG),
    ("It could be 7 or 8.", "8", WRONG),
    ("I guess it is 42.", "42", WRONG),
    ("It might be $5$.", "5", WRONG),
    ("So she makes 9*2=$18 every day.", "18", RIGHT),  # a closing number that does not hedge
    ("The solution is $x = 4$ or $x = 5$.", "5", WRONG),
    ("The solutions are $x = 4$ and $x = 5$.", "5", WRONG),
    ("So x = 11 or x = 12.", "12", WRONG),
    ("We get $x=5$, $y=6$.", "6", WRONG),
    ("So we get x = 5 and y = 6.", "6", WRONG),
    ("\\boxed{11} or \\boxed{12}", "12", WRONG),  # two boxes joined by "or" against one value
    ("\\boxed{7}, \\boxed{7}", "7", RIGHT),  # one answer boxed twice
    ("The answer could be $5$.", "5", WRONG),
    ("\\boxed{9_2}", "9", WRONG),  # no digit 9 in base 2
    ("\\boxed{9}", "9_2", WRONG),
]


@pytest.mark.parametrize(
    ("response", "gold", "right"),
    TWICE_BOXED + ANSWER_DELIMITERS + INEQUALITIES + STATED_SENTENCES + GROUPINGS + RULINGS,
)
def test_math_rules(response: str, gold: str, right: bool) -> None:
    result = get_verifier("math").verify(response, gold)
    assert result.correct is right, result


@pytest.mark.parametrize(
    ("response", "gold", "status"),
    [
        ("Maybe 41, maybe 42, or maybe 43.", "43", "no_answer"),
        ("It could be 7 or 8.", "8", "no_answer"),
        ("She sold 7 cups, then 8 more, so 15 in all.", "15", "ok"),
        ("#### 43", "43", "ok"),  # the marker is stated, never a hedge
        ("\\boxed{}", "4", "no_answer"),
    ],
)
def test_numeric_refuses_a_hedge(response: str, gold: str, status: str) -> None:
    assert get_verifier("numeric").verify(response, gold).status == status


def test_an_empty_box_is_no_answer() -> None:
    for response in ("\\boxed{}", "\\boxed{ }", "\\boxed{\\boxed{}}", "So: \\boxed{} and \\fbox{}."):
        assert get_verifier("math").verify(response, "4").status == "no_answer", response


def test_the_labelled_set_of_kinds() -> None:
    """tests/data/verifier_kinds.jsonl (the quality benchmark's per-kind set): every pair gets its label."""
    rows = [json.loads(line) for line in (Path(__file__).parent / "data" / "verifier_kinds.jsonl").open()]
    assert len(rows) == 275 and len({row["kind"] for row in rows}) == 10
    math = get_verifier("math")
    mistakes = [r for r in rows if math.verify(r["response"], r["gold"]).correct != bool(r["label"])]
    assert not mistakes


def test_an_empty_gold_is_an_error_not_a_wrong_answer() -> None:
    for name in ("math", "exact", "numeric", "choice"):
        for gold in ("", "   ", "$$", "\\(\\)", "\\boxed{}", "$\\boxed{ }$"):
            result = get_verifier(name).verify("\\boxed{1}", gold)
            assert result.status == "error" and not result.correct and result.detail, (name, result)
