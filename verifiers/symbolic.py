"""Symbolic equivalence of two LaTeX answers, without ever executing model text.

LaTeX is read into unevaluated sympy trees by a small reader for common arithmetic (`latex_fast`) or else
by a grammar-based parser (latex2sympy2_extended's ANTLR grammar); no `eval`, `sympify` or `parse_expr`
ever sees the text. Before anything is evaluated, `check_size` bounds the digits of the whole tree (a bound
propagated through sums, products, powers and factorials), so `10^{10^{10}}` and `((10^{9999})^{9999})^{9999}`
are refused instead of allocating memory forever.

Comparison is exact where it can be: numbers without free symbols are compared as exact rationals when both
are rational (so `1/2004!` and `1/2006!` differ), otherwise at 60 significant digits with a relative
tolerance of 1e-40. Expressions with symbols are equal when `a - b` simplifies to 0 or agrees at several
positive rational points; equations are equal when one is a non-zero multiple of the other; sets, intervals,
tuples and matrices compare element by element.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

import sympy
from latex2sympy2_extended import latex2sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig

from verifiers.latex_fast import Unsupported, parse_simple

MAX_SYMBOLIC_CHARS = 400
MAX_NODES = 400
MAX_DIGITS = 30_000.0  # `10^{9999}`, `2^{10000}` and `1000!` are fine; `((10^{9999})^{9999})^{9999}` is not
MAX_FACTORIAL = 5_000.0
MAX_MATRIX_SIDE = 20  # rows or columns; each entry also counts towards MAX_NODES and MAX_DIGITS
_PRECISION = 60
_TOLERANCE = sympy.Float("1e-40", _PRECISION)
_POINTS = (sympy.Rational(7, 5), sympy.Rational(23, 10), sympy.Rational(31, 7), sympy.Rational(11, 3))
_STEPS = (sympy.floor, sympy.ceiling, sympy.frac, sympy.Mod, sympy.sign, sympy.Piecewise)
_DECIMAL = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?![\d.])")
_CONVERSION = ConversionConfig(interpret_as_mixed_fractions=True, lowercase_symbols=False)


class UnsafeExpression(ValueError):
    """An answer too long or too large to evaluate (a refused `10^{10^{10}}` and the like)."""


def _decimal_as_fraction(match: re.Match[str]) -> str:
    whole, decimals = match.groups()
    return "\\frac{" + (whole + decimals).lstrip("0").rjust(1, "0") + "}{1" + "0" * len(decimals) + "}"


@lru_cache(maxsize=4096)
def parse_latex(text: str) -> sympy.Basic:
    """An unevaluated sympy tree for a LaTeX answer; raises ValueError (or UnsafeExpression) on failure.

    Decimals become exact fractions first (`0.1` → `\\frac{1}{10}`), so nothing is rounded to a float.
    """
    if len(text) > MAX_SYMBOLIC_CHARS:
        raise UnsafeExpression(f"answer longer than {MAX_SYMBOLIC_CHARS} characters")
    try:
        expr = parse_simple(text)  # the common shapes, without the (slow) full grammar
    except RecursionError:  # `((((...1...))))`: nesting deeper than anyone's answer
        raise UnsafeExpression("answer nested too deeply") from None
    except (Unsupported, TypeError, ValueError, AttributeError):  # anything it cannot build: the grammar
        try:
            latex = _DECIMAL.sub(_decimal_as_fraction, text)
            expr = latex2sympy(latex, normalization_config=None, conversion_config=_CONVERSION)
        except Exception as exc:  # the grammar raises bare Exceptions for syntax errors
            raise ValueError(f"cannot parse {text[:80]!r}: {str(exc).splitlines()[0][:120]}") from None
    check_size(expr)
    return expr


def _bound(expr: sympy.Basic) -> float:
    """An upper bound on |expr| with every symbol set to 3, in floats (inf when it overflows)."""
    try:
        if isinstance(expr, sympy.Symbol):
            return 3.0
        if expr.is_Number:
            return abs(float(expr)) if expr.is_finite else math.inf
        args = [_bound(arg) for arg in expr.args]
        if isinstance(expr, sympy.Pow):
            base, exponent = args
            return math.inf if base > 1 and exponent > 1e4 else max(base, 1.0) ** exponent
        if isinstance(expr, sympy.Add):
            return sum(args)
        if isinstance(expr, sympy.Mul):
            return math.prod(args)
        if isinstance(expr, sympy.factorial):
            return math.inf if args[0] > 170 else float(math.factorial(int(args[0])))
        return max(args, default=1.0)
    except (OverflowError, ValueError, TypeError):
        return math.inf


def _digits(expr: sympy.Basic) -> float:
    """An upper bound on the digits that evaluating `expr` exactly can need, propagated through the tree.

    Sums and products add their operands' digits, a power multiplies its base's digits by a bound on its
    exponent, `n!` needs about n·log10(n). Bounding each node alone is not enough: every exponent of
    `((10^{9999})^{9999})^{9999}` is small, the number has 4·10^11 digits. A matrix needs the digits of its
    entries (a mutable `sympy.Matrix` has no `.args`, which used to make every matrix look infinite).
    """
    if isinstance(expr, sympy.MatrixBase):
        return sum(_digits(entry) for entry in expr) + 1.0
    if isinstance(expr, sympy.Symbol) or not expr.args:
        if expr.is_Rational:
            return float(len(str(abs(expr.p))) + len(str(expr.q)))
        return 1.0
    if isinstance(expr, sympy.Pow):
        exponent = _bound(expr.exp)
        return math.inf if math.isinf(exponent) else _digits(expr.base) * max(exponent, 1.0)
    counting = isinstance(expr, (sympy.factorial, sympy.binomial, sympy.factorial2, sympy.gamma))
    if counting:
        n = max((_bound(arg) for arg in expr.args), default=1.0)
        if n > MAX_FACTORIAL:
            return math.inf
        return n * math.log10(max(n, 2.0)) + sum(_digits(arg) for arg in expr.args)
    return sum(_digits(arg) for arg in expr.args) + 1.0


def check_size(expr: sympy.Basic) -> None:
    """Refuse trees too big to evaluate: more than MAX_NODES nodes, or an exact value with more than
    MAX_DIGITS digits anywhere in the tree (huge exponents, towers, nested powers, factorials, binomials), or
    a matrix with more than MAX_MATRIX_SIDE rows or columns (its entries count as nodes and digits)."""
    if isinstance(expr, sympy.MatrixBase) and max(expr.shape) > MAX_MATRIX_SIDE:
        raise UnsafeExpression(f"matrix larger than {MAX_MATRIX_SIDE}x{MAX_MATRIX_SIDE}")
    for nodes, _ in enumerate(sympy.preorder_traversal(expr), start=1):
        if nodes > MAX_NODES:
            raise UnsafeExpression(f"answer has more than {MAX_NODES} terms")
    try:
        digits = _digits(expr)
    except (RecursionError, OverflowError, ValueError, TypeError, AttributeError):
        digits = math.inf
    if digits > MAX_DIGITS:
        raise UnsafeExpression("answer too large to evaluate exactly")


def _numeric_equal(a: sympy.Basic, b: sympy.Basic) -> bool:
    """Exact for rationals; otherwise 60-digit evaluation with relative tolerance 1e-40."""
    a, b = a.doit(), b.doit()
    if a.is_Rational and b.is_Rational:
        return bool(a == b)
    x, y = sympy.N(a, _PRECISION), sympy.N(b, _PRECISION)
    if not (x.is_number and y.is_number) or x.has(sympy.nan) or y.has(sympy.nan):
        return False
    if x.has(sympy.zoo, sympy.oo, -sympy.oo) or y.has(sympy.zoo, sympy.oo, -sympy.oo):
        return bool(x == y)
    difference = abs(x - y)
    return bool(difference <= _TOLERANCE * max(abs(x), abs(y), sympy.Float(1e-300)))


def _at_points(
    expr: sympy.Basic, symbols: list[sympy.Symbol], shift: int, offset: int = 0
) -> list[sympy.Basic]:
    values = []
    for k in range(len(_POINTS)):
        point = {s: _POINTS[(k + i + shift) % len(_POINTS)] * (1 + offset) + i for i, s in enumerate(symbols)}
        values.append(expr.xreplace(point))
    return values


def _expressions_equal(a: sympy.Basic, b: sympy.Basic) -> bool:
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if not symbols:
        return _numeric_equal(a, b)
    if a == b:
        return True
    shifts = (0,) if not (a.has(*_STEPS) or b.has(*_STEPS)) else (0, 17, 101)
    for shift in shifts:  # steps (floor, mod, ...) can agree at a few points: more, and far apart
        a_points, b_points = _at_points(a, symbols, 0, shift), _at_points(b, symbols, 0, shift)
        if not all(_numeric_equal(x, y) for x, y in zip(a_points, b_points, strict=True)):
            return False
    return True


def _constant_ratio(f: sympy.Basic, g: sympy.Basic) -> sympy.Basic | None:
    """c when f = c·g for a non-zero constant c (agreeing at several points), else None."""
    symbols = sorted(f.free_symbols | g.free_symbols, key=str)
    if not symbols:
        return None
    ratios = []
    for x, y in zip(_at_points(f, symbols, 1), _at_points(g, symbols, 1), strict=True):
        x, y = sympy.N(x.doit(), _PRECISION), sympy.N(y.doit(), _PRECISION)
        if y == 0 or not y.is_number:
            if x != 0:
                return None
            continue
        ratios.append(x / y)
    if not ratios or ratios[0] == 0 or not all(_numeric_equal(r, ratios[0]) for r in ratios[1:]):
        return None
    return ratios[0]


def _equations_equal(a: sympy.Eq, b: sympy.Eq) -> bool:
    """`y = 2x + 1` equals `2x - y + 1 = 0`: one's lhs − rhs is a non-zero multiple of the other's."""
    if a.lhs == b.lhs and isinstance(a.lhs, sympy.Symbol):
        return equivalent(a.rhs, b.rhs)
    return _constant_ratio(a.lhs - a.rhs, b.lhs - b.rhs) is not None


def _as_below_zero(relation: sympy.Basic) -> tuple[sympy.Basic, bool]:
    """`l < r` → (l − r, strict), `l >= r` → (r − l, not strict): every inequality as f < 0 or f <= 0."""
    op = relation.rel_op
    difference = relation.lhs - relation.rhs if op in ("<", "<=") else relation.rhs - relation.lhs
    return difference, op in ("<", ">")


def _inequalities_equal(a: sympy.Basic, b: sympy.Basic) -> bool:
    """`x < 1` equals `-x > -1` and `1 > x`: the same strictness and f = c·g with c > 0."""
    if a.rel_op in ("!=", "==") or b.rel_op in ("!=", "=="):
        return a.rel_op == b.rel_op and _constant_ratio(a.lhs - a.rhs, b.lhs - b.rhs) is not None
    (f, strict_f), (g, strict_g) = _as_below_zero(a), _as_below_zero(b)
    if strict_f != strict_g:
        return False
    if f.free_symbols == g.free_symbols and len(f.free_symbols) <= 1 and equivalent(f, g):
        return True
    ratio = _constant_ratio(f, g)
    return ratio is not None and bool(ratio > 0)


def _elements_equal(xs: list[sympy.Basic], ys: list[sympy.Basic], ordered: bool) -> bool:
    if len(xs) != len(ys):
        return False
    if ordered:
        return all(equivalent(x, y) for x, y in zip(xs, ys, strict=True))
    unmatched = list(ys)
    for x in xs:
        match = next((i for i, y in enumerate(unmatched) if equivalent(x, y)), None)
        if match is None:
            return False
        unmatched.pop(match)
    return True


def _drop_variable(a: sympy.Basic, b: sympy.Basic) -> tuple[sympy.Basic, sympy.Basic]:
    """`x = 3` against `3` (or `x \\in [1, 2)` against `[1, 2)`): compare the right-hand side."""
    for first, second in ((a, b), (b, a)):
        if isinstance(first, sympy.Eq) and not isinstance(second, sympy.Eq) and first.lhs.is_Symbol:
            return (first.rhs, second) if first is a else (second, first.rhs)
    return a, b


def _open_interval_as_pair(x: sympy.Basic) -> sympy.Basic:
    """`(1, 2)` is a point or an open interval: the grammar reads an interval, the fast reader a pair."""
    if isinstance(x, sympy.Interval) and x.left_open and x.right_open:
        return sympy.Tuple(x.start, x.end)
    return x


def equivalent(a: sympy.Basic, b: sympy.Basic) -> bool:
    """Whether two parsed answers are mathematically the same; see the module docstring for the rules."""
    a, b = _drop_variable(a, b)
    a, b = _open_interval_as_pair(a), _open_interval_as_pair(b)
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        if not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase)) or a.shape != b.shape:
            return False
        return _elements_equal(list(a), list(b), ordered=True)
    family = _family(a)
    if family != _family(b):
        return False
    compare = _COMPARE.get(family) if family is not None else None
    return compare(a, b) if compare is not None else bool(a == b)


def _intervals_equal(a: sympy.Interval, b: sympy.Interval) -> bool:
    same_ends = a.left_open == b.left_open and a.right_open == b.right_open
    return same_ends and equivalent(a.start, b.start) and equivalent(a.end, b.end)


_FAMILIES = (
    sympy.Eq,
    sympy.core.relational.Relational,
    sympy.FiniteSet,
    sympy.Union,
    sympy.Interval,
    sympy.Tuple,
    sympy.Expr,
)


# how two answers of one family compare (a family is the first of _FAMILIES the object is an instance of)
_COMPARE = {
    sympy.Eq: lambda a, b: _equations_equal(a, b),
    sympy.core.relational.Relational: lambda a, b: _inequalities_equal(a, b),
    sympy.FiniteSet: lambda a, b: _elements_equal(list(a.args), list(b.args), ordered=False),
    sympy.Union: lambda a, b: _elements_equal(list(a.args), list(b.args), ordered=False),
    sympy.Interval: lambda a, b: _intervals_equal(a, b),
    sympy.Tuple: lambda a, b: _elements_equal(list(a.args), list(b.args), ordered=True),
    sympy.Expr: lambda a, b: _expressions_equal(a, b),
}


def _family(x: sympy.Basic) -> type | None:
    """The sympy base class that decides how `x` compares (the grammar returns subclasses of its own)."""
    return next((family for family in _FAMILIES if isinstance(x, family)), None)
