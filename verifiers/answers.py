"""The shapes real answers come in, read as plain strings before anything is parsed: lists of values (`1331
\\text{ and } 1728`, `p=5,q=2;p=7,q=2`), equations around a value (`|r-s| = 16`, `\\frac{28}{4}=7`,
`(p,q)=(3,2)`), and inequalities that denote an interval (`0 < x < 12.5` is `(0, 12.5)`).

Every function is a single pass over a short answer (the extracted answer, not the response); none evaluates.
"""

from __future__ import annotations

import re
from functools import lru_cache

_OPENERS, _CLOSERS = "([{", ")]}"
_CONNECTIVE = re.compile(r"\\text\s*\{\s*(and|or|,)\s*\}|\\(?:quad|qquad)\b|\b(?:and|or)\b")
_NAME = re.compile(r"[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?'?")
_NAME_SIDE = re.compile(r"[^0-9+\-*/^=<>]*")  # no digits or arithmetic outside subscripts: a name, not a sum
_SUBSCRIPT = re.compile(r"_\{[^{}]*\}|_[A-Za-z0-9]")
_APPROX = re.compile(r"\\approx|≈|\\sim(?![a-z])")
_RELATIONS = (
    ("\\leq", "<="),
    ("\\geq", ">="),
    ("\\le", "<="),
    ("\\ge", ">="),
    ("\\lt", "<"),
    ("\\gt", ">"),
    ("≤", "<="),
    ("≥", ">="),
    ("=<", "<="),
    ("=>", ">="),
)
_RELATION_SPLIT = re.compile(r"<=|>=|<|>")
_CLOCK = re.compile(r"(\d{1,2}:\d{2})(?:([ap])\.?m\.?)?", re.IGNORECASE)  # a normalised `4:30p.m`


def _top_level_split(text: str, separators: str) -> list[str]:
    """`text` split at the characters in `separators` that are outside every bracket and brace."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text[i + 1 : i + 2] in ("{", "}"):
            i += 2
            continue
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth = max(0, depth - 1)
        elif char in separators and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _unwrap_set(text: str) -> str:
    text = text.strip()
    for opening, closing in (("\\{", "\\}"), ("{", "}")):
        if text.startswith(opening) and text.endswith(closing):
            inner = text[len(opening) : -len(closing)]
            if inner.count("{") == inner.count("}"):
                return inner
    return text


def split_items(text: str) -> list[str]:
    """The values of a list answer: `1, 2`, `1 \\text{ and } 2`, `\\{1; 2\\}`, `x=1 or x=2` → two items.
    Brackets keep their commas (`(1, 2)`, `[0, 1)` are one item each)."""
    return list(_split_items(text))


@lru_cache(maxsize=8192)  # golds repeat, and each comparison asks several times
def _split_items(text: str) -> tuple[str, ...]:
    text = _CONNECTIVE.sub(",", _unwrap_set(text).replace("\\,", " ").replace("\\;", " "))
    items = [item.strip().strip("$").strip() for item in _top_level_split(text, ",;")]
    return tuple(item for item in items if item)


def groups(text: str) -> list[list[str]]:
    """`p=5,q=2;p=7,q=2` → [[p=5, q=2], [p=7, q=2]]: semicolons separate solutions, commas their parts."""
    return [split_items(group) for group in _top_level_split(_unwrap_set(text), ";") if group.strip()]


def has_approx(text: str) -> bool:
    return _APPROX.search(text) is not None


def approx_parts(text: str) -> list[str]:
    """`\\frac23 \\approx 0.67` → [`\\frac23`, `0.67`]: the exact value, then its approximation."""
    return [part.strip() for part in _APPROX.split(text, maxsplit=1)]


def equation_sides(text: str) -> list[str]:
    """The sides of `a = b = c` at top level (one side when there is no `=`); `\\approx` ends the chain."""
    return list(_equation_sides(text))


@lru_cache(maxsize=8192)
def _equation_sides(text: str) -> tuple[str, ...]:
    text = _APPROX.split(text, maxsplit=1)[0]
    if "=" not in text or any(op in text for op in ("<=", ">=", "\\le", "\\ge", "\\neq", "!=")):
        return (text.strip(),)
    return tuple(side.strip() for side in _top_level_split(text, "="))


def is_name(text: str) -> bool:
    """A name for a quantity rather than an expression to solve: `x`, `a_{37}`, `(p,q)`, `|AB|`, `f(x)`,
    `A:B`, `\\frac{NO}{BO}`, `S_{MBCN}:S`. No digits or arithmetic outside subscripts."""
    text = _SUBSCRIPT.sub("", text.strip())
    return bool(text) and any(c.isalpha() for c in text) and _NAME_SIDE.fullmatch(text) is not None


def named_value(text: str) -> tuple[str | None, str]:
    """`x = 3` → ("x", "3"); `|r-s| = 16` → ("|r-s|", "16"); `3` → (None, "3"). The value is the last side
    of an equation chain (`\\frac{28}{4} = 7` → 7), the name the side before it."""
    sides = equation_sides(text)
    if len(sides) < 2 or not sides[-1]:
        return None, text.strip()
    return sides[-2], sides[-1]


def relation_interval(text: str) -> tuple[str, str] | None:
    """An inequality in one variable as (variable, interval): `x<3` → (x, `(-\\infty,3)`), `0 < x \\le 12.5`
    → (x, `(0,12.5]`), `x \\ge 2` → (x, `[2,\\infty)`), `3 > x` → (x, `(-\\infty,3)`). None otherwise."""
    for latex, plain in _RELATIONS:
        text = text.replace(latex, plain)
    if text.count("<") + text.count(">") not in (1, 2) or "=" in text.replace("<=", "").replace(">=", ""):
        return None
    sides = [side.strip() for side in _RELATION_SPLIT.split(text)]
    ops = _RELATION_SPLIT.findall(text)
    if len(sides) == 2:
        return _one_sided(sides, ops[0])
    if len(sides) == 3 and ops[0][0] == ops[1][0] and _NAME.fullmatch(sides[1]):
        low, high = (sides[0], sides[2]) if ops[0][0] == "<" else (sides[2], sides[0])
        flipped = ops if ops[0][0] == "<" else ops[::-1]
        left = "[" if flipped[0].endswith("=") else "("
        right = "]" if flipped[1].endswith("=") else ")"
        return sides[1], f"{left}{low},{high}{right}"
    return None


def _one_sided(sides: list[str], op: str) -> tuple[str, str] | None:
    if _NAME.fullmatch(sides[0]) and sides[1]:
        variable, bound, less = sides[0], sides[1], op[0] == "<"
    elif _NAME.fullmatch(sides[1]) and sides[0]:
        variable, bound, less = sides[1], sides[0], op[0] == ">"
    else:
        return None
    closed = op.endswith("=")
    if less:
        return variable, f"(-\\infty,{bound}{']' if closed else ')'}"
    return variable, f"{'[' if closed else '('}{bound},\\infty)"


def clock_time(normalized: str) -> tuple[str, str | None] | None:
    """`4:30` → ("4:30", None), `4:30p.m` → ("4:30", "p"): a time of day, from a normalised answer (no
    spaces, `\\text{}` unwrapped); None for anything else."""
    found = _CLOCK.fullmatch(normalized)
    return None if found is None else (found.group(1), found.group(2) and found.group(2).lower())


def tuple_equation(text: str) -> tuple[list[str], list[str]] | None:
    """`(f(x), g(x)) = (x, 2)` → ([f(x), g(x)], [x, 2]): the items of an equation between two tuples of two or
    more items each (their lengths may differ). None for anything else."""
    sides = equation_sides(text)
    if len(sides) != 2 or not all(_wrapped(side) for side in sides):
        return None
    names, values = ([item.strip() for item in _top_level_split(side[1:-1], ",")] for side in sides)
    return (names, values) if len(names) >= 2 and len(values) >= 2 else None


def distributed(text: str) -> str | None:
    """`(f(x), g(x)) = (x, 2)` → `f(x) = x, g(x) = 2`: an equation between two tuples of one length is the
    list of the equations of their items. None for anything else."""
    found = tuple_equation(text)
    if found is None or len(found[0]) != len(found[1]):
        return None
    return ", ".join(f"{name} = {value}" for name, value in zip(*found, strict=True))


def set_members(text: str) -> list[str] | None:
    """`\\{1, 2\\}, \\{5, 6\\}` → [1, 2, 5, 6]: the members of a list of two or more flat sets, flattened.
    None unless the text is only such sets, separated by commas or "and"."""
    pieces = text.split("\\}")
    if len(pieces) < 3 or pieces[-1].strip():
        return None
    members = []
    for piece in pieces[:-1]:
        head, opening, body = piece.partition("\\{")
        if not opening or "\\{" in body or _CONNECTIVE.sub("", head).strip(" ,;"):
            return None
        members += [item.strip() for item in body.split(",") if item.strip()]
    return members


def _wrapped(text: str) -> bool:
    """Whether one pair of parentheses wraps all of `text` (`(a, b)`, not `(a)(b)`)."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for i, char in enumerate(text):
        depth += (char in _OPENERS) - (char in _CLOSERS)
        if depth == 0:
            return i == len(text) - 1
    return False
