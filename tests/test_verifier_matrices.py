"""Issue 25, kind 3: matrices and vectors compare entry by entry by value, the same shape required, with the
near misses that must stay wrong (docs/verifiers.md, "Matrices and vectors")."""

from __future__ import annotations

import time

import pytest
import sympy

from verifiers import get_verifier
from verifiers.matrices import read_matrix, tuple_items
from verifiers.normalize import strip_delimiters
from verifiers.symbolic import MAX_MATRIX_SIDE, UnsafeExpression, check_size, equivalent, parse_latex

pytestmark = pytest.mark.usefixtures("generous_verifier_limits")  # correctness, not speed


def boxed(answer: str) -> str:
    return "We work it out step by step.\n\nSo the final answer is $\\boxed{" + answer + "}$."


def status(answer: str, gold: str) -> str:
    return get_verifier("math").verify(boxed(answer), gold).status


def env(name: str, body: str, spec: str = "") -> str:
    return f"\\begin{{{name}}}{spec}{body}\\end{{{name}}}"


def p(body: str) -> str:
    return env("pmatrix", body)


def b(body: str) -> str:
    return env("bmatrix", body)


COLUMN = p("1 \\\\ 2")
SQUARE = p("1 & 2 \\\\ 3 & 4")

# (answer, gold): the same matrix written differently
SAME = [
    (b("1 \\\\ 2"), COLUMN),  # bmatrix against pmatrix
    (p("\\frac12 & 2 \\\\ 3 & 4"), p("0.5 & 2 \\\\ 3 & 4")),
    (p("2/4 & 2 \\\\ 3 & 4"), b("\\frac{1}{2} & 2 \\\\ 3 & 4")),
    (p("\\dfrac{1}{2} \\\\ -\\tfrac13"), p("0.5 \\\\ -1/3")),
    (COLUMN, "\\left( \\begin{matrix} 1 \\\\ 2 \\\\ \\end{matrix} \\right)"),  # wrapped, trailing `\\`
    (COLUMN, "\\left(\\begin{matrix}1\\\\2\\\\\\end{matrix}\\right)"),
    (p("1 \\\\ 2 \\\\"), COLUMN),
    (p("x/2 \\\\ 3/4"), p("\\frac{x}{2} \\\\ \\frac{3}{4}")),  # `a/b` against `\frac{a}{b}`
    (p("1/\\sqrt{2} \\\\ 0"), p("\\frac{\\sqrt2}{2} \\\\ 0")),
    (p("1/\\sqrt2 & -1/\\sqrt2"), p("\\frac{\\sqrt{2}}{2} & -\\frac{\\sqrt{2}}{2}")),
    ("\\left[\\begin{array}{cc}1 & 2\\\\3 & 4\\end{array}\\right]", SQUARE),
    ("\\left( \\begin{array}{c|c} 1 & 2 \\\\ \\hline 3 & 4 \\end{array} \\right)", SQUARE),
    ("[\\begin{matrix}1 & 2\\\\3 & 4\\end{matrix}]", SQUARE),
    ("\\left(\\begin{smallmatrix}1 & 2\\\\3 & 4\\end{smallmatrix}\\right)", b("1&2\\\\3&4")),
    (env("matrix", "1 & 2 \\\\ 3 & 4"), SQUARE),
    (p("\\sqrt{8} \\\\ 2x + 1"), p("2\\sqrt{2} \\\\ 1 + 2x")),
    (p("-\\frac{1}{3} \\\\ \\frac{2}{3}"), p("-1/3 \\\\ 2/3")),
    (p("5"), b("5")),
    (p(" 1 \\\\(2)"), COLUMN),  # a row that starts with a bracket after `\\`
    ("\\mathbf{v} = " + COLUMN, COLUMN),  # the value of `v = ...`
    (COLUMN, "\\mathbf{v} = " + b("1 \\\\ 2")),
    ("(1, 2)", "(1, 2)"),
]

# (answer, gold): near misses, wrong in both directions
DIFFERENT = [
    (p("1 & 2"), COLUMN),  # a row against a column: transposed
    (SQUARE, p("1 & 3 \\\\ 2 & 4")),  # transposed
    (SQUARE, p("1 & 2 \\\\ 3 & 5")),  # one entry different
    (SQUARE, p("1 & 2 \\\\ 3 & -4")),
    (p("\\frac12 \\\\ 2"), p("\\frac13 \\\\ 2")),
    (p("0.333333 \\\\ 2"), p("\\frac13 \\\\ 2")),  # no rounding inside a matrix either
    (SQUARE, p("1 & 2 & 3 & 4")),  # the same entries, another shape
    (SQUARE, p("1 \\\\ 2 \\\\ 3 \\\\ 4")),
    (SQUARE, p("1 \\\\ 3")),
    (p("1 \\\\ 2 \\\\ 0"), COLUMN),
    (p("5"), "5"),  # a matrix is no scalar
    (SQUARE, "-2"),  # nor its determinant
    (SQUARE, env("vmatrix", "1 & 2 \\\\ 3 & 4")),  # a vmatrix is a determinant
    (SQUARE, "\\left[\\begin{array}{cc}1 & 2\\\\3 & 5\\end{array}\\right]"),
    (p("x \\\\ 2"), p("y \\\\ 2")),
    (p("2x + 1 \\\\ 0"), p("2x + 2 \\\\ 0")),
    (p("\\pm 1 \\\\ 2"), COLUMN),
    ("\\mathbf{v} = " + p("1 \\\\ 3"), COLUMN),
    (COLUMN, "(2, 1)"),
    (COLUMN, "\\{1, 2\\}"),
    (COLUMN, "1, 2"),
    (SQUARE, "[1, 4]"),
]

# The ruling: a column vector answers a gold tuple of its length; a vector gold wants a vector
TUPLE_GOLD = [
    (COLUMN, "(1, 2)", "ok"),
    (b("\\frac12 \\\\ -3"), "\\left( 0.5, -3 \\right)", "ok"),
    (p("1 \\\\ 2 \\\\ 3"), "(1,2,3)", "ok"),
    (COLUMN, "(p, q) = (1, 2)", "ok"),
    (COLUMN, "(2, 1)", "wrong"),
    (p("1 \\\\ 2 \\\\ 3"), "(1, 2)", "wrong"),
    (p("1 & 2"), "(1, 2)", "wrong"),  # a row vector is not the tuple
    ("(1, 2)", COLUMN, "wrong"),  # a tuple does not answer a vector gold
    ("\\left(1, 2\\right)", b("1 \\\\ 2"), "wrong"),
    ("(1, 2)", p("1 & 2"), "wrong"),
]


@pytest.mark.parametrize(("answer", "gold"), SAME)
def test_the_same_matrix_written_differently(answer: str, gold: str) -> None:
    assert status(answer, gold) == "ok"
    assert status(gold, answer) == "ok"


@pytest.mark.parametrize(("answer", "gold"), DIFFERENT)
def test_near_misses_stay_wrong(answer: str, gold: str) -> None:
    assert status(answer, gold) == "wrong"
    assert status(gold, answer) == "wrong"


@pytest.mark.parametrize(("answer", "gold", "expected"), TUPLE_GOLD)
def test_a_column_vector_answers_a_tuple(answer: str, gold: str, expected: str) -> None:
    assert status(answer, gold) == expected


@pytest.mark.parametrize(
    "response",
    [
        "The answer is $\\begin{pmatrix} 1/2 \\\\ 3 \\end{pmatrix}$.",
        "Thus $\\mathbf{v} = \\boxed{\\begin{bmatrix} 0.5 \\\\ 3 \\end{bmatrix}}$.",
        "<think>maybe (1, 3)</think>\n<answer>\\begin{pmatrix}\\frac12\\\\3\\end{pmatrix}</answer>",
        "\\begin{pmatrix} 0.5 \\\\ 3 \\end{pmatrix}",  # a response that is only the matrix
    ],
)
def test_matrix_answers_in_responses(response: str) -> None:
    math = get_verifier("math")
    assert math.verify(response, "\\begin{pmatrix} \\frac{1}{2} \\\\ 3 \\end{pmatrix}").correct
    assert not math.verify(response, "\\begin{pmatrix} \\frac{1}{2} \\\\ 4 \\end{pmatrix}").correct


def test_read_matrix() -> None:
    assert read_matrix(SQUARE) == (("1", "2"), ("3", "4"))
    assert read_matrix("\\left( \\begin{array}{cc} a & b \\\\ \\end{array} \\right)") == (("a", "b"),)
    for not_one in (
        "5",
        "(1, 2)",
        env("vmatrix", "1 & 2 \\\\ 3 & 4"),
        env("Vmatrix", "1"),
        env("array", "1 & 2"),  # no column spec
        p("1 & 2 \\\\ 3"),  # ragged
        p("1 & \\\\ 3 & 4"),  # an empty entry
        p(""),
        p("1 \\\\ \\\\ 2"),
        p(p("1")),  # nested
        p("1") + " + " + p("2"),
        "2" + p("1"),
        p("1") + "^T",
        "\\left|" + env("matrix", "1 & 2 \\\\ 3 & 4") + "\\right|",  # a determinant
        "\\left(" + p("1") + ")",
        "\\begin{pmatrix}1\\end{bmatrix}",
    ):
        assert read_matrix(not_one) is None, not_one


def test_tuple_items() -> None:
    assert tuple_items("(1, 2)") == ["1", "2"]
    assert tuple_items("\\left( \\frac12, x \\right)") == ["\\frac12", "x"]
    for not_one in ("(1)", "1, 2", "(1, 2) + (3, 4)", "(1, 2]", "[1, 2]", "(1 \\text{ and } 2)"):
        assert tuple_items(not_one) is None, not_one


def test_matrices_over_the_size_bound_are_refused() -> None:
    side = MAX_MATRIX_SIDE + 1
    wide = p(" & ".join(["1"] * side))
    tall = p(" \\\\ ".join(["1"] * side))
    for matrix in (wide, tall):
        with pytest.raises(UnsafeExpression):
            read_matrix(matrix)
        assert status(matrix.replace("1", "\\frac{2}{2}", 1), matrix) == "wrong"
    with pytest.raises(UnsafeExpression):
        check_size(sympy.Matrix([[1] * side]))


def test_the_largest_matrix_is_compared_quickly() -> None:
    side = MAX_MATRIX_SIDE
    rows = [" & ".join(str(i * side + j) for j in range(side)) for i in range(side)]
    gold = b(" \\\\ ".join(rows))
    answer = p(" \\\\ ".join(rows).replace("0 & 1 &", "\\frac{0}{3} & 2/2 &", 1))
    started = time.monotonic()
    assert status(answer, gold) == "ok"
    assert status(answer.replace("399", "398"), gold) == "wrong"
    assert time.monotonic() - started < 2.0


def test_entries_keep_the_magnitude_guards() -> None:
    huge = p("10^{10^{10}} \\\\ 1")
    with pytest.raises(UnsafeExpression):
        parse_latex(huge)
    started = time.monotonic()
    assert status(huge, p("10^{10^{10}} + 1 \\\\ 1")) == "wrong"
    assert time.monotonic() - started < 1.0


def test_the_size_guard_counts_a_matrix_by_its_entries() -> None:
    """A sympy.Matrix has no `.args`: the guard used to see an infinite bound and refuse every matrix."""
    half, mixed = parse_latex(p("\\frac{1}{2} \\\\ 2")), parse_latex(p("0.5 \\\\ 2"))
    assert isinstance(half, sympy.MatrixBase) and equivalent(half, mixed)
    assert not equivalent(half, parse_latex(p("\\frac{1}{3} \\\\ 2")))
    check_size(sympy.Matrix([[1] * MAX_MATRIX_SIDE] * (MAX_MATRIX_SIDE // 2)))
    check_size(sympy.ImmutableMatrix([[1, sympy.Rational(1, 2)]]))


def test_a_row_break_before_a_bracket_is_no_delimiter() -> None:
    assert strip_delimiters("\\(x\\)") == "x"
    assert strip_delimiters("\\[ 1 \\]") == "1"
    assert strip_delimiters(p("1 \\\\(2)")) == p("1 \\\\(2)")
    assert strip_delimiters(p("1 \\\\[2, 3]")) == p("1 \\\\[2, 3]")
