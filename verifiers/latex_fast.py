"""A small recursive-descent reader for the common shapes of answers, ~100x faster than the full grammar.

Most answers are arithmetic in numbers, single-letter variables, `\\frac`, `\\sqrt`, `^`, `\\pi` and `e`
(`\\frac{\\sqrt{3}}{2}`, `2x^2 - 1`, `3\\pi`). This reader builds an unevaluated sympy tree equal in value
to the full grammar's, and raises `Unsupported` for anything else (functions, sets, relations, ...), which
then goes to the full grammar. Like the grammar, it never evaluates text.
"""

from __future__ import annotations

import re

import sympy

_TOKEN = re.compile(r"\s*(\\[a-zA-Z]+|\\\\|\d+\.\d+|\d+|\.\d+|[a-zA-Z]|[-+*/^(){}\[\],=&])")
_CONSTANTS = {"\\pi": sympy.pi, "e": sympy.E, "\\infty": sympy.oo}
_MATRIX = re.compile(r"^\\begin\{([pb]matrix)\}(.*)\\end\{\1\}$", re.S)
_TIMES = {"*", "\\cdot", "\\times"}


class Unsupported(ValueError):
    """The text uses something this reader does not handle; use the full grammar."""


def _tokenize(text: str) -> list[str]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise Unsupported(text[position : position + 10])
        tokens.append(match.group(1))
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return tokens


def _expr(node: sympy.Basic) -> sympy.Expr:
    """Arithmetic on a pair or a set (`-(1, 2)`) is left to the grammar."""
    if not isinstance(node, sympy.Expr):
        raise Unsupported(f"arithmetic on {type(node).__name__}")
    return node


def _small(node: sympy.Basic) -> bool:
    """Few terms, no factorials and small exponents: cheap and safe to evaluate."""
    nodes = list(sympy.preorder_traversal(node))
    return len(nodes) <= 30 and all(
        not isinstance(n, sympy.factorial)
        and not (isinstance(n, sympy.Pow) and n.exp.is_Number and abs(n.exp) > 64)
        for n in nodes
    )


def _interval(start: sympy.Basic, end: sympy.Basic, left_open: bool, right_open: bool) -> sympy.Interval:
    """`[a, b)` and friends. Only ordered numeric ends: sympy turns `[5, 2]` into the empty set, which would
    make any two reversed intervals equal, so everything else goes to the full grammar."""
    if not (_small(start) and _small(end) and start.is_number and end.is_number):
        raise Unsupported("interval with symbolic or large ends")
    if (start.doit() < end.doit()) is not sympy.true:
        raise Unsupported("interval whose ends are not in order")
    return sympy.Interval(start.doit(), end.doit(), left_open, right_open)


def _as_interval(node: sympy.Basic) -> sympy.Basic:
    """Inside a union, `(a, b)` is an open interval, not a pair."""
    if isinstance(node, sympy.Tuple) and len(node) == 2:
        return _interval(node[0], node[1], True, True)
    return node


def _number(token: str) -> sympy.Rational:
    if "." in token:
        whole, _, decimals = token.partition(".")
        return sympy.Rational(int(whole or "0") * 10 ** len(decimals) + int(decimals), 10 ** len(decimals))
    return sympy.Integer(int(token))


class _Reader:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise Unsupported(f"expected {expected!r}, got {token!r}")
        self.i += 1
        return token

    def items(self) -> list[sympy.Basic]:
        found = [self.expression()]
        while self.peek() == ",":
            self.take()
            found.append(self.expression())
        return found

    def expression(self) -> sympy.Basic:
        terms = [self.signed()]
        while self.peek() in ("+", "-"):
            sign = self.take()
            term = self.term()
            terms.append(sympy.Mul(-1, _expr(term), evaluate=False) if sign == "-" else term)
        return terms[0] if len(terms) == 1 else sympy.Add(*map(_expr, terms), evaluate=False)

    def signed(self) -> sympy.Basic:
        if self.peek() == "-":
            self.take()
            return sympy.Mul(-1, _expr(self.term()), evaluate=False)
        if self.peek() == "+":
            self.take()
        return self.term()

    def term(self) -> sympy.Basic:
        factors = [self.power()]
        while True:
            token = self.peek()
            if token in _TIMES:
                self.take()
                factors.append(self.power())
            elif token == "/":
                self.take()
                factors.append(sympy.Pow(self.power(), -1, evaluate=False))
            elif token is not None and (
                token[0].isalnum() or token in ("(", "{", "\\frac", "\\sqrt", "\\pi")
            ):
                factors.append(self.power())  # implicit multiplication: 2\sqrt{3}, 3x, 2(x+1)
            else:
                break
        return factors[0] if len(factors) == 1 else sympy.Mul(*map(_expr, factors), evaluate=False)

    def power(self) -> sympy.Basic:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            exponent = self.group() if self.peek() == "{" else self.single()
            return sympy.Pow(_expr(base), _expr(exponent), evaluate=False)
        return base

    def group(self) -> sympy.Basic:
        self.take("{")
        inner = self.expression()
        self.take("}")
        return inner

    def single(self) -> sympy.Basic:
        """A one-character argument, as in `\\frac12` or `x^2`."""
        token = self.take()
        if token.isdigit():
            if len(token) > 1:  # `x^23` is x^2·3 in TeX: leave that to the full grammar
                raise Unsupported(f"multi-digit unbraced argument {token!r}")
            return sympy.Integer(int(token))
        if len(token) == 1 and token.isalpha():
            return _CONSTANTS.get(token, sympy.Symbol(token))
        if token in _CONSTANTS:
            return _CONSTANTS[token]
        raise Unsupported(token)

    def bracketed(self, token: str) -> sympy.Basic:
        """`(a)`, a tuple `(a, b, ...)` (a pair, as in the grammar), or an interval `(a, b]`, `[a, b)`."""
        self.take()
        items = self.items()
        close = self.take()
        if token == "(" and close == ")":
            return items[0] if len(items) == 1 else sympy.Tuple(*items)
        if len(items) != 2 or close not in (")", "]"):
            raise Unsupported(f"bracket {token}...{close} around {len(items)} item(s)")
        return _interval(items[0], items[1], token == "(", close == ")")

    def fraction(self) -> sympy.Basic:
        self.take()
        numerator = self.group() if self.peek() == "{" else self.single()
        denominator = self.group() if self.peek() == "{" else self.single()
        return sympy.Mul(numerator, sympy.Pow(denominator, -1, evaluate=False), evaluate=False)

    def root(self) -> sympy.Basic:
        """`\\sqrt{x}` or `\\sqrt[n]{x}`."""
        self.take()
        index = None
        if self.peek() == "[":
            self.take()
            index = self.expression()
            self.take("]")
        radicand = self.group() if self.peek() == "{" else self.single()
        root = sympy.Pow(index, -1, evaluate=False) if index is not None else sympy.Rational(1, 2)
        return sympy.Pow(radicand, root, evaluate=False)

    def atom(self) -> sympy.Basic:
        token = self.peek()
        if token is None:
            raise Unsupported("unexpected end")
        if token in ("(", "["):
            return self.bracketed(token)
        if token == "{":
            return self.group()
        if token == "\\frac":
            return self.fraction()
        if token == "\\sqrt":
            return self.root()
        self.take()
        if token[0].isdigit() or token[0] == ".":
            return _number(token)
        if len(token) == 1 and token.isalpha():
            return _CONSTANTS.get(token, sympy.Symbol(token))
        if token in _CONSTANTS:
            return _CONSTANTS[token]
        raise Unsupported(token)


def _parse_items(text: str) -> list[sympy.Basic]:
    reader = _Reader(_tokenize(text))
    items = reader.items()
    if reader.peek() is not None:
        raise Unsupported(f"trailing {reader.peek()!r}")
    return items


def parse_simple(text: str) -> sympy.Basic:
    """An unevaluated sympy tree for simple LaTeX answers, else raises `Unsupported`.

    Handles arithmetic, a bare list `1, 2` (a set, as the grammar reads it), tuples `(1, 2)`, intervals with
    ordered numeric ends (`[1, 2)`, `(-\\infty, 0]`) and their unions, one equation `y = 2x + 1`, and
    `pmatrix`/`bmatrix` of such entries.
    """
    text = text.strip()
    if "\\cup" in text:  # a union of intervals
        parts = [_as_interval(parse_simple(part)) for part in text.split("\\cup")]
        if not all(isinstance(part, sympy.Interval) for part in parts):
            raise Unsupported("union of something other than intervals")
        return sympy.Union(*parts, evaluate=False)
    matrix = _MATRIX.match(text)
    if matrix:
        rows = [row for row in matrix.group(2).split("\\\\") if row.strip()]
        cells = [[parse_simple(cell) for cell in row.split("&")] for row in rows]
        if not cells or len({len(row) for row in cells}) != 1:
            raise Unsupported("ragged matrix")
        return sympy.Matrix(cells)
    if text.count("=") == 1:
        left, right = text.split("=")
        return sympy.Eq(parse_simple(left), parse_simple(right), evaluate=False)
    items = _parse_items(text)
    if len(items) == 1:
        return items[0]
    return sympy.FiniteSet(*items)
