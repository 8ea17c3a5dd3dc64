"""Matrices and vectors read as plain strings, so that their entries can be compared one by one by value.

`read_matrix` reads `pmatrix`, `bmatrix`, `matrix`, `smallmatrix` and `array` (with its column spec), bare
or inside `(...)`, `[...]`, `\\left(...\\right)` or `\\left[...\\right]`, with or without a trailing `\\\\`
before `\\end`, into rows of entry strings. A `vmatrix` is a determinant (a number), not a matrix, and is
not read; nor is a matrix nested in another, or one with empty or ragged rows. `tuple_items` reads a tuple
`(a, b)`, which a column vector answers (docs/verifiers.md, "Matrices and vectors").

Every function is one pass over the text (string methods and anchored patterns); none evaluates.
"""

from __future__ import annotations

import re
from functools import lru_cache

from verifiers.answers import split_items
from verifiers.symbolic import MAX_MATRIX_SIDE, UnsafeExpression

Entries = tuple[tuple[str, ...], ...]  # rows of entry strings

_BEGIN = re.compile(r"\\begin\s*\{(pmatrix|bmatrix|matrix|smallmatrix|array)\}")
_COLUMN_SPEC = re.compile(r"\s*\{[lcr|\s]*\}")  # `{cc}`, `{c|c}`; `@{}` and `*{3}{c}` are not read
_END = re.compile(r"\\end\s*\{(\w+)\}")
_WRAPPERS = (("(", ")"), ("[", "]"))


def _unwrap(text: str, wrappers: tuple[tuple[str, str], ...] = _WRAPPERS) -> str:
    """`\\left( X \\right)`, `( X )`, `[ X ]` → X (once); anything else as it is."""
    left = text.startswith("\\left")
    inner = text[len("\\left") :].lstrip() if left else text
    for opening, closing in wrappers:
        if len(inner) > 1 and inner.startswith(opening) and inner.endswith(closing):
            inner = inner[1:-1].strip()
            if not left:
                return inner
            return inner[: -len("\\right")].rstrip() if inner.endswith("\\right") else text
    return text


def _body(text: str) -> str | None:
    """What lies between `\\begin{env}` (and an array's column spec) and the matching final `\\end{env}`."""
    begin = _BEGIN.match(text)
    if begin is None:
        return None
    start = begin.end()
    if begin.group(1) == "array":
        spec = _COLUMN_SPEC.match(text, start)
        if spec is None:
            return None
        start = spec.end()
    end_at = text.rfind("\\end")
    end = _END.fullmatch(text, end_at) if end_at >= start else None
    if end is None or end.group(1) != begin.group(1):
        return None
    body = text[start:end_at]
    return None if "\\begin" in body or "\\end" in body else body


@lru_cache(maxsize=8192)  # golds repeat, and each comparison asks for both sides
def read_matrix(text: str) -> Entries | None:
    """The rows of entries of a matrix answer (`\\begin{pmatrix}1 & 2\\\\ 3 & 4\\end{pmatrix}` →
    `(("1", "2"), ("3", "4"))`), or None when the text is not one matrix. Raises UnsafeExpression for more
    than MAX_MATRIX_SIDE rows or columns."""
    body = _body(_unwrap(text.strip()))
    if body is None:
        return None
    rows = [row.strip() for row in body.replace("\\hline", " ").split("\\\\")]
    if rows and not rows[-1]:
        rows.pop()  # a trailing `\\` before `\end`
    if len(rows) > MAX_MATRIX_SIDE:
        raise UnsafeExpression(f"matrix with more than {MAX_MATRIX_SIDE} rows")
    cells = tuple(tuple(cell.strip() for cell in row.split("&", MAX_MATRIX_SIDE)) for row in rows)
    if any(len(row) > MAX_MATRIX_SIDE for row in cells):
        raise UnsafeExpression(f"matrix with more than {MAX_MATRIX_SIDE} columns")
    if not cells or len({len(row) for row in cells}) != 1 or not all(all(row) for row in cells):
        return None  # empty, ragged, or with an empty entry
    return cells


def _balanced(text: str) -> bool:
    """Brackets and braces that close in order of depth: `1, 2` but not `1, 2) + (3, 4`."""
    depth = 0
    for char in text:
        depth += (char in "([{") - (char in ")]}")
        if depth < 0:
            return False
    return depth == 0


def tuple_items(text: str) -> list[str] | None:
    """The items of a tuple of two or more (`(1, 2)`, `\\left( 1, \\frac12 \\right)`), else None."""
    text = text.strip()
    inner = _unwrap(text, _WRAPPERS[:1])
    if inner == text or not _balanced(inner):
        return None
    items = split_items(inner)
    return items if 2 <= len(items) <= MAX_MATRIX_SIDE and "," in inner else None
