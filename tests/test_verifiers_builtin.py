"""The built-in verifiers, including a regression suite of grader bugs seen in other RL toolkits."""

from __future__ import annotations

import pytest

from verifiers import Result, get_verifier
from verifiers.extract import UnbalancedBraces, answer_is, gsm8k_answer, last_boxed, last_number
from verifiers.normalize import normalize_answer, to_fraction
from verifiers.symbolic import UnsafeExpression, parse_latex

pytestmark = pytest.mark.usefixtures("generous_verifier_limits")  # correctness, not speed


def boxed(answer: str) -> str:
    return "Some reasoning first. So the final answer is $\\boxed{" + answer + "}$."


# Pairs that naive graders call equal but are not (rounding, dropped signs, equations reduced to 0 = 0).
FALSE_POSITIVES = [
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}"),
    ("\\pm 2021", "2021"),
    ("1-\\frac{1}{e}", "1+\\frac{1}{e}"),
    ("x+y=0", "x-y=0"),
    ("y=2x+1", "y=3x+1"),
    ("4\\sqrt(2)", "4"),
    ("(1,2)", "(2,1)"),
    ("[1,2)", "[1,2]"),
    ("0.333333", "\\frac{1}{3}"),
    ("1101_2", "1101_3"),
    ("10^{10^{10}}", "10^{10^{10}}+1"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}"),
    ("x > 3", "x < 3"),
]

# Pairs that are the same answer written differently.
FALSE_NEGATIVES = [
    ("\\sqrt{1/n}", "\\frac{1}{\\sqrt n}"),
    ("28 percent", "28\\%"),
    ("\\text{13}", "13"),
    ("\\dfrac12", "0.5"),
    ("\\{3,2,1\\}", "\\{1,2,3\\}"),
    ("x \\in [1,2)", "[1,2)"),
    ("x=3", "3"),
    ("30^\\circ", "30"),
    ("5\\text{ cm}", "5"),
    ("1,000", "1000"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
    ("2x-y+1=0", "y=2x+1"),
    ("3 < x", "x > 3"),
    ("\\left( 1, 2 \\right)", "(1,2)"),
    ("\\frac{\\pi}{4}", "\\pi/4"),
    ("25_{6}", "25_6"),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
    ("(-\\infty, 2] \\cup (3, \\infty)", "(3,\\infty)\\cup(-\\infty,2]"),
]


@pytest.mark.parametrize(("answer", "gold"), FALSE_POSITIVES)
def test_math_rejects_near_misses(answer: str, gold: str) -> None:
    math = get_verifier("math")
    assert not math.verify(boxed(answer), gold).correct
    assert not math.verify(boxed(gold), answer).correct


@pytest.mark.parametrize(("answer", "gold"), FALSE_NEGATIVES)
def test_math_accepts_equivalent_forms(answer: str, gold: str) -> None:
    math = get_verifier("math")
    result = math.verify(boxed(answer), gold)
    assert result.status == "ok", result
    assert result.reward == 1.0 and result.correct


def test_math_statuses_and_rewards() -> None:
    math = get_verifier("math", reward_wrong=0.0)
    assert math.verify("I am not sure.", "5") == Result(False, 0.0, "no_answer", None, None)
    assert math.verify("\\boxed{\\frac{1}{2}", "5").status == "parse_error"  # the box never closes
    wrong = math.verify(boxed("6"), "5")
    assert (wrong.status, wrong.reward, wrong.extracted) == ("wrong", 0.0, "6")
    assert math.verify("x" * 20_001 + boxed("5"), "5").status == "no_answer"  # over the length cap
    assert math.verify("Therefore the answer is 7.", "7").status == "ok"
    assert math.verify("\\fbox{7}", "7").status == "ok"


def test_math_never_executes_text(tmp_path) -> None:  # noqa: ANN001
    sentinel = tmp_path / "sentinel"
    attack = f"__import__('os').system('touch {sentinel}')"
    result = get_verifier("math").verify(boxed(attack), "5")
    assert not result.correct and result.status in {"wrong", "parse_error"}
    assert not sentinel.exists()


def test_huge_expressions_are_refused_not_evaluated() -> None:
    with pytest.raises(UnsafeExpression):
        parse_latex("10^{10^{10}}")
    with pytest.raises(UnsafeExpression):
        parse_latex("100000!")
    assert parse_latex("2^{10}").doit() == 1024
    assert get_verifier("math").verify(boxed("10^{10^{10}}"), "5").status == "wrong"


def test_extraction() -> None:
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{a}{b}}") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{\\{1,2\\}}") == "\\{1,2\\}"  # escaped braces do not nest
    assert last_boxed("so \\boxed 5 done") == "5"
    assert last_boxed("no box") is None
    with pytest.raises(UnbalancedBraces):
        last_boxed("\\boxed{" + "{" * 10_000)
    assert answer_is("blah. The final answer is: $42$.") == "42"
    assert gsm8k_answer("work\n#### 1,234") == "1,234"
    assert last_number("from 3 to -4.5 and 1,000 apples") == "1,000"


def test_normalisation() -> None:
    assert normalize_answer("$\\dfrac12$.") == "\\frac{1}{2}"
    assert normalize_answer("\\text{\\textbf{13}}") == "13"
    assert to_fraction("\\frac{1}{4}") == to_fraction("0.25") == to_fraction("1/4")
    assert to_fraction("1,234.5") * 2 == 2469
    assert to_fraction("1/0") is None and to_fraction("x") is None


@pytest.mark.parametrize(
    ("response", "reference", "status"),
    [
        ("Natalia sold 72 clips.\n#### 72", "72", "ok"),
        ("#### 71", "72", "wrong"),
        ("The total is $1,000.", "1000", "ok"),
        ("\\boxed{42.0}", "#### 42", "ok"),
        ("It weighs 18 kg", "18", "ok"),
        ("-3 degrees", "-3", "ok"),
        ("I don't know", "3", "no_answer"),
        ("#### three", "3", "parse_error"),
    ],
)
def test_numeric(response: str, reference: str, status: str) -> None:
    assert get_verifier("numeric").verify(response, reference).status == status


def test_numeric_rejects_a_non_number_reference() -> None:
    result = get_verifier("numeric").verify("#### 3", "three")
    assert result.status == "error" and "not a number" in result.detail


OPTIONS = {"options": ["A)21", "B)23", "C)25", "D)27", "E)29"]}


@pytest.mark.parametrize(
    ("response", "reference", "sample", "status"),
    [
        ("Answer: B", "B", None, "ok"),
        ("The answer is (C).", "B", None, "wrong"),
        ("\\boxed{D}", "d", None, "ok"),
        ("\\boxed{25}", "C", OPTIONS, "ok"),  # the option's text instead of its letter
        ("so it is (E)", "29", OPTIONS, "ok"),  # reference given as the option's text
        ("no idea", "A", None, "no_answer"),
    ],
)
def test_choice(response: str, reference: str, sample: dict | None, status: str) -> None:
    assert get_verifier("choice").verify(response, reference, sample).status == status


def test_exact() -> None:
    exact = get_verifier("exact")
    assert exact.verify("The answer is $\\text{Monday}$.", "monday").correct
    assert not get_verifier("exact", case_sensitive=True).verify("\\boxed{monday}", "Monday").correct
    assert exact.verify("  Paris ", "paris").correct
    assert not exact.verify("Lyon", "Paris").correct


@pytest.mark.parametrize(
    "text",
    [
        "\\frac{\\sqrt{3}}{2}",
        "2x^2-1",
        "3\\pi",
        "\\sqrt[3]{8}",
        "e^{2}",
        "-0.25",
        "2(x+1)",
        "x/y",
        "(1,2,3)",
        "k=6",
    ],
)
def test_fast_reader_agrees_with_the_grammar(text: str) -> None:
    from latex2sympy2_extended import latex2sympy

    from verifiers.latex_fast import parse_simple
    from verifiers.symbolic import equivalent

    assert equivalent(parse_simple(text), latex2sympy(text.replace("-0.25", "-\\frac{1}{4}")))


def test_fast_reader_leaves_the_rest_to_the_grammar() -> None:
    from verifiers.latex_fast import Unsupported, parse_simple

    for text in ("\\sin x", "[a,b)", "[5,2]", "x^23", "\\{1,2\\}", "a;b", "x \\le 3"):
        with pytest.raises(Unsupported):
            parse_simple(text)
    assert get_verifier("math").verify(boxed("[a, b)"), "[a,b)").correct  # through the grammar
    assert not get_verifier("math").verify(boxed("[5, 2]"), "[6,2]").correct  # not two equal empty sets
