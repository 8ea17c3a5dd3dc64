"""The kinds of answers real models write, each with neighbours on both sides: forms that must verify against
the gold, and near misses that must not. One test per kind (see docs/verifiers.md for the rules)."""

from __future__ import annotations

import time

import pytest

from verifiers import get_verifier
from verifiers.symbolic import UnsafeExpression, parse_latex

pytestmark = pytest.mark.usefixtures("generous_verifier_limits")  # correctness, not speed


def boxed(answer: str) -> str:
    return "We work it out step by step.\n\nSo the final answer is $\\boxed{" + answer + "}$."


def math_ok(response: str, gold: str) -> bool:
    return get_verifier("math").verify(response, gold).correct


# Kind 2: size guards bound the whole tree, not each node.
@pytest.mark.parametrize(
    "answer",
    [
        "((10^{9999})^{9999})^{9999}",
        "(((2^{9000})^{9000})^{9000})^{9000}",
        "10^{9999} \\cdot 10^{9999} \\cdot 10^{9999} \\cdot 10^{9999}",
        "(4999!)^{9999}",
        "(10^{9999})^{10^{3}}",
        "9^{9^{9}}",
        "2^{2^{2^{2^{2}}}}",
    ],
)
def test_nested_magnitudes_are_refused_quickly(answer: str) -> None:
    started = time.monotonic()
    with pytest.raises(UnsafeExpression):
        parse_latex(answer)
    assert get_verifier("math").verify(boxed(answer), "1").status == "wrong"
    assert time.monotonic() - started < 1.0


def test_large_but_reasonable_numbers_are_still_evaluated() -> None:
    assert parse_latex("2^{10000}").doit() == 2**10000
    assert math_ok(boxed("10^{100}"), "10^{100}")
    assert math_ok(boxed("1000!"), "1000!")
    assert not math_ok(boxed("2^{1000}"), "2^{1001}")


# Kind 3: inequalities and intervals denote the same set of the same variable.
SAME_SETS = [
    ("x<3", "(-\\infty, 3)"),
    ("0 < x < 12.5", "(0, 12.5)"),
    ("x \\ge 2", "[2, \\infty)"),
    ("x \\geq 2", "[2,\\infty)"),
    ("x \\le -1", "(-\\infty,-1]"),
    ("3 > x", "(-\\infty, 3)"),
    ("-2 \\le x \\le 7", "[-2, 7]"),
    ("-2 \\le x < 7", "[-2, 7)"),
    ("x \\in [-2, 7]", "-2 \\leq x \\leq 7"),
    ("t > \\frac{1}{2}", "\\left(\\frac{1}{2}, \\infty\\right)"),
    ("x < 1", "-x > -1"),
    ("x < -2 \\text{ or } x > 3", "(-\\infty,-2)\\cup(3,\\infty)"),
]
DIFFERENT_SETS = [
    ("x<3", "(-\\infty, 3]"),
    ("x \\le 3", "(-\\infty, 3)"),
    ("0 < x < 12.5", "[0, 12.5]"),
    ("x > 2", "(-\\infty, 2)"),
    ("y<3", "x<3"),
    ("x \\ge 2", "[3, \\infty)"),
    ("x < 1", "x > -1"),
    ("x < -2 \\text{ or } x > 3", "(-\\infty,-2)\\cup[3,\\infty)"),
]


@pytest.mark.parametrize(("answer", "gold"), SAME_SETS)
def test_inequalities_equal_their_intervals_both_ways(answer: str, gold: str) -> None:
    assert math_ok(boxed(answer), gold)
    assert math_ok(boxed(gold), answer)


@pytest.mark.parametrize(("answer", "gold"), DIFFERENT_SETS)
def test_different_sets_stay_different(answer: str, gold: str) -> None:
    assert not math_ok(boxed(answer), gold)
    assert not math_ok(boxed(gold), answer)


# Kind 4: answer sets written another way; several boxes are one answer when the gold lists several values.
@pytest.mark.parametrize(
    ("response", "gold"),
    [
        (boxed("1331 \\text{ and } 1728"), "1331, 1728"),
        (boxed("1728 \\text{ and } 1331"), "1331, 1728"),
        (boxed("1331 \\text{ or } 1728"), "1331, 1728"),
        (boxed("\\{1331, 1728\\}"), "1331, 1728"),
        ("The primes are \\boxed{3}, \\boxed{5}, \\boxed{7}.", "3, 5, 7"),
        ("The primes are $\\boxed{3}$, $\\boxed{5}$ and $\\boxed{7}$.", "3, 5, 7"),
        ("$x=\\boxed{2}$ or $x=\\boxed{-2}$", "2, -2"),
        ("$x=\\boxed{-2}$ or $x=\\boxed{2}$", "2, -2"),
        ("The solutions are $\\boxed{(2, 2)} \\quad \\text{and} \\quad \\boxed{(6, 2)}$.", "(2, 2), (6, 2)"),
        ("\\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]", "1,-2"),
        (boxed("x = 1, x = 2"), "1, 2"),
    ],
)
def test_answer_sets(response: str, gold: str) -> None:
    assert math_ok(response, gold)


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        ("The primes are \\boxed{3}, \\boxed{5}, \\boxed{7}.", "3, 5, 11"),
        ("The primes are \\boxed{3}, \\boxed{5}.", "3, 5, 7"),
        (boxed("1331 \\text{ and } 1729"), "1331, 1728"),
        ("First \\boxed{3}. Much later, after a long discussion of the problem: \\boxed{5}", "3, 5"),
        ("Part (a) gives \\boxed{12}; then the total is \\boxed{7}.", "12, 7"),
        (boxed("3"), "3, 5"),
    ],
)
def test_answer_sets_near_misses(response: str, gold: str) -> None:
    assert not math_ok(response, gold)


def test_a_single_value_gold_takes_the_last_box() -> None:
    assert math_ok("First \\boxed{12}, so the answer is \\boxed{7}.", "7")
    assert not math_ok("First \\boxed{7}, so the answer is \\boxed{12}.", "7")
    # After a box, a value stated after it wins, but a sentence after "Answer:" does not replace the box.
    assert math_ok("So \\boxed{5}.\n\nThe answer is 6.", "6")
    assert math_ok("So \\boxed{5}.\n\nAnswer: The area is 5, and the perimeter is 12.", "5")


# Kind 5: equations around the answer.
@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("|r-s| = 16", "16"),
        ("\\frac{28}{4}=7", "7"),
        ("2+2+2=6", "6"),
        ("(b,c)=(6,5)", "(6,5)"),
        ("x = 5+5+1 = 11", "11"),
        ("AB = 4", "4"),
        ("(5,2),(7,2)", "p=5,q=2;p=7,q=2"),
        ("(3,2)", "$(p,q)=(3,2)$"),
        ("(3,2)", "(p,q)=(3,2)"),
        ("\\frac{1}{\\sqrt{6}}", "\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}"),
        ("7:32", "S_{MBCN}:S=7:32"),
        ("4, 5", "AB=4,CD=5"),
        ("-10,-8,4", "a=4,\\,-8,\\,-10"),
        ("a_{37} = 19, a_3 = 2", "a_3 = 2, a_{37} = 19"),
        ("x = \\frac{1}{3} \\approx 0.33", "\\frac{1}{3}"),
    ],
)
def test_equations_around_the_value(answer: str, gold: str) -> None:
    assert math_ok(boxed(answer), gold)


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("|r-s| = 15", "16"),
        ("\\frac{28}{4}=8", "7"),
        ("(b,c)=(5,6)", "(6,5)"),
        ("0", "a + 3z = 0"),  # an equation to solve is no value
        ("1", "2x + z = 1"),
        ("11a+c", "7 = 11a+c"),
        ("(2,5),(7,2)", "p=5,q=2;p=7,q=2"),
        ("2, 1", "x=1, y=2"),  # named values in order
        ("y = 1, x = 2", "x=1, y=2"),
        ("-x = 1", "x = 1"),
    ],
)
def test_equations_near_misses(answer: str, gold: str) -> None:
    assert not math_ok(boxed(answer), gold)


# Kind 6: answers outside a box, and golds with delimiters.
@pytest.mark.parametrize(
    "response",
    [
        "Answer $ 9 $",
        "Answer \\( 9 \\)",
        "Answer \\[ 9 \\]",
        "Answer $\n9\n$",
        "Answer \\(\n9\n\\)",
        "Answer \\[\n 9 \n\\]",
        "Answer $$\n9\n$$",
        "Answer: 9",
        "**Final Answer:** 9",
        "**Final Answer**\n\n9",
        "The final answer is 9. I hope it is correct.",
        "Final Answer: The final answer is $9$. I hope it is correct.",
        "Thus $9$ is our answer.",
        "Therefore, the number of apples is 9.",
        "The answer is 9." + " Let me double-check this by substituting back: it works." * 40,
        "$9$",
    ],
)
def test_answers_outside_a_box(response: str) -> None:
    for gold in ("9", "$9$", "$$9$$", "\\(9\\)"):
        assert math_ok(response, gold), (response, gold)


@pytest.mark.parametrize(
    "response",
    [
        "Answer $ 8 $",
        "The answer is correct: we found 9 apples, then lost one, which leaves 8.",
        "To answer this, we compute 3 times 3, which is 9, and",  # unfinished
        "So we get 9 apples",  # no sentence end: a truncated response states nothing
        "The answer is 9. Wait, that is wrong; the answer is 8.",
    ],
)
def test_answers_outside_a_box_near_misses(response: str) -> None:
    assert not math_ok(response, "9")


# Kind 8: rulings (docs/verifiers.md, "Rulings").
@pytest.mark.parametrize(
    ("answer", "gold", "same"),
    [
        ("pi/2", "\\frac{\\pi}{2}", True),  # programming spellings read as maths
        ("sqrt(2)/2", "\\frac{\\sqrt{2}}{2}", True),
        ("exp(16)", "e^{16}", True),
        ("2*pi", "2\\pi", True),
        ("pi/3", "\\frac{\\pi}{2}", False),
        ("exp(15)", "e^{16}", False),
        ("0.28", "28\\%", True),  # a percentage equals its number and its fraction
        ("28\\%", "0.28", True),
        ("28", "28\\%", True),
        ("28\\%", "28", True),
        ("0.28", "28", False),  # without a percent sign on either side, 0.28 is not 28
        ("2.8\\%", "28\\%", False),
        ("0.333333", "\\frac{1}{3}", False),  # rounded decimals are not the exact value
        ("1 - \\frac{1}{e}", "1 + \\frac{1}{e}", False),
        ("0.0011_{3}", "0.0011_{2}", False),  # a base is part of the number, fractional digits too
        ("\\$\\dfrac23 \\approx \\$0.68", "\\$\\dfrac23 \\approx \\$0.67", False),  # a gold's rounding counts
        ("\\frac23 \\approx 0.67", "\\frac{2}{3}", True),  # against an exact gold, the exact value counts
        ("x \\approx 11", "11", True),
    ],
)
def test_rulings(answer: str, gold: str, same: bool) -> None:
    assert math_ok(boxed(answer), gold) == same


# Kind 7: multiple-choice letters.
@pytest.mark.parametrize(
    ("response", "gold", "status"),
    [
        ("Answer: D\nWhy? The answer is a direct consequence of the definitions.", "A", "wrong"),
        ("Answer: D\nWhy? The answer is a direct consequence of the definitions.", "D", "ok"),
        ("The answer is an integer, namely (B).", "B", "ok"),
        ("ANSWER: **A**", "A", "ok"),
        ("**Final Answer:** B", "B", "ok"),
        ("**Final Answer:**\n\n(C)", "C", "ok"),
        ("\\boxed{E: A polygenic risk score}", "E", "ok"),
        ("\\boxed{E) A polygenic risk score}", "E", "ok"),
        ("\\boxed{(E) A polygenic risk score}", "E", "ok"),
        ("\\boxed{\\text{(C)}}", "C", "ok"),
        ("The answer is a", "A", "ok"),
        ("After all that, a careful reader sees the answer is a matter of definitions.", "A", "no_answer"),
    ],
)
def test_choice_letters(response: str, gold: str, status: str) -> None:
    assert get_verifier("choice").verify(response, gold).status == status
