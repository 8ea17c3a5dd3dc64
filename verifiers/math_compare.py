"""The `math` verifier's comparison of an extracted answer with a gold answer, in layers, cheapest first.

1. One reading each (`_compare_one`): normalised strings, matrices entry by entry (`verifiers.matrices`),
   exact rationals, then symbolic equivalence of the parsed LaTeX. A verdict between two plain numbers, two
   numbers in different bases, two matrices, a `\\pm` answer and a plain one, or an answer too large to
   evaluate is final.
2. The shapes real answers come in (`verifiers.answers`): the value of a final `lhs = value` (`|r-s| = 16`
   against 16), the value of a named gold (`(p,q)=(3,2)` against `(3,2)`), lists and answer sets in any
   order (`1331 \\text{ and } 1728` against `1331, 1728`; `p=5,q=2;p=7,q=2` against `(5,2),(7,2)`), and
   inequalities as intervals (`0 < x < 12.5` against `(0, 12.5)`).
3. math-verify's comparison of the same two strings, inside our guards (`verifiers.fallback`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NamedTuple

import sympy

from verifiers.answers import (
    approx_parts,
    clock_time,
    distributed,
    equation_sides,
    groups,
    has_approx,
    is_name,
    named_value,
    relation_interval,
    set_members,
    split_items,
    tuple_equation,
)
from verifiers.base import Status
from verifiers.extract import answer_is, final_boxes
from verifiers.fallback import math_verify_equal
from verifiers.matrices import Entries, read_matrix, tuple_items
from verifiers.normalize import (
    BASE_NUMBER,
    LIST_COMMA,
    VALUE_WORDS,
    has_percent,
    normalize_answer,
    strip_delimiters,
    to_fraction,
)
from verifiers.symbolic import UnsafeExpression, equivalent, parse_latex

_MAX_ITEMS = 16
_INNER_DOLLARS = re.compile(r"(?<!\\)\$")
_SOLUTION_CHARS = 200  # a longer gold is a worked solution, not an answer
_UNION_SPLIT = re.compile(r"\\cup|\\text\s*\{\s*or\s*\}|\bor\b")
_IN_SET = re.compile(r"^\s*([A-Za-z](?:_\{?\w+\}?)?)\s*\\in\s*")


class Verdict(NamedTuple):
    status: Status
    final: bool  # no other reading can change it
    settled: bool = False  # our other readings may still change it, math-verify is not asked


@lru_cache(maxsize=8192)
def _parsed_reference(reference: str) -> Any:
    """Gold answers repeat n times per prompt: parse each once. Returns the tree or the exception."""
    try:
        return parse_latex(reference)
    except ValueError as exc:
        return exc


def _mentions_plus_minus(text: str) -> bool:
    return "\\pm" in text or "\\mp" in text or "±" in text


def _is_relation(text: str) -> bool:
    return "=" in text or "\\in" in text


def _numbers_equal(answer: str, gold: str, mine: Any, theirs: Any) -> bool:
    """Exact rationals; a percentage also equals its fraction (`28\\%` is 28 and 0.28; docs/verifiers.md)."""
    if mine == theirs:
        return True
    if has_percent(answer) != has_percent(gold):
        return (mine / 100 == theirs) if has_percent(answer) else (mine == theirs / 100)
    return False


def _compare_one(answer: str, gold: str) -> Verdict:
    """One reading of each side: strings, then exact numbers, then the parsed LaTeX."""
    if _mentions_plus_minus(answer) != _mentions_plus_minus(gold):  # ±2021 is two answers, 2021 is one
        return Verdict("wrong", len(split_items(answer)) < 2 and len(split_items(gold)) < 2)
    # `x = 3` matches `3`, but `y = 2x + 1` stays an equation when the gold is one too.
    mine = normalize_answer(answer, drop_variable=not _is_relation(gold))
    theirs = normalize_answer(gold, drop_variable=not _is_relation(answer))
    if mine == theirs:
        return Verdict("ok", True)
    if mine.lstrip("-") == theirs.lstrip("-"):
        return Verdict("wrong", True)  # the same text but for a leading minus sign
    matrices = _matrix_verdict(answer, gold)
    if matrices is not None:
        return matrices
    if BASE_NUMBER.match(mine) or BASE_NUMBER.match(theirs):
        return _base_verdict(mine, theirs)
    if ":" in mine or ":" in theirs:
        return _clock_verdict(mine, theirs)
    listed = LIST_COMMA.search(answer) or LIST_COMMA.search(gold)
    mine_value, gold_value = (None, None) if listed else (to_fraction(mine), to_fraction(theirs))
    if mine_value is not None and gold_value is not None:
        return Verdict("ok" if _numbers_equal(answer, gold, mine_value, gold_value) else "wrong", True)
    return _compare_parsed(mine, theirs)


def _base_verdict(mine: str, theirs: str) -> Verdict:
    """`1101_2` and `1101_3` are different numbers: the base is part of one. A subscript written on one side
    only is dropped (`1011` answers `1011_2`: the digits decide; docs/verifiers.md, "Rulings"). Final unless
    a side is an equation (`\\frac58 = 0.101_2`: its value is read later)."""
    if mine.split("_")[0] == theirs.split("_")[0] and ("_" in mine) != ("_" in theirs):
        return Verdict("ok" if _digits_fit_base(mine if "_" in mine else theirs) else "wrong", True)
    return Verdict("wrong", "=" not in mine + theirs)


def _digits_fit_base(number: str) -> bool:
    """`1011_2` can be written in base 2; `9_2` cannot (a digit 9 in base 2 is no number)."""
    digits, _, base = number.rpartition("_")
    if not base.isdigit() or not 2 <= int(base) <= 36:
        return False
    return all(int(c, 36) < int(base) for c in digits.replace(".", "").lstrip("-") if c.isalnum())


def _clock_verdict(mine: str, theirs: str) -> Verdict:
    """Times of day: `4:30` answers `4:30 p.m.` (the gold's a.m./p.m. is not asked of the answer), but
    `4:30 a.m.` does not. Ratios and other texts with `:` compare as written."""
    mine_time, gold_time = clock_time(mine), clock_time(theirs)
    if mine_time is None or gold_time is None:
        return Verdict("wrong", False, True)
    same = mine_time[0] == gold_time[0] and (mine_time[1] is None or mine_time[1] == gold_time[1])
    return Verdict("ok" if same else "wrong", True)


def _matrix_verdict(answer: str, gold: str) -> Verdict | None:
    """Matrices entry by entry, each entry compared like any answer (`\\frac12` = `0.5`), the same shape
    required; a column vector also answers a gold tuple of its length; a matrix is no other kind of answer
    (docs/verifiers.md, "Matrices and vectors"). None when neither side is a matrix."""
    try:
        mine, theirs = read_matrix(answer), read_matrix(gold)
    except UnsafeExpression:
        return Verdict("wrong", True)
    if mine is None and theirs is None:
        return None
    if mine is not None and theirs is not None:
        return Verdict("ok" if _entries_equal(mine, theirs) else "wrong", True)
    # a matrix written some other way (`2\begin{pmatrix}...`, `\begin{pmatrix}...^T`) is left to the parsed
    # trees and math-verify; `v = (matrix)` to the reading of its value
    readable = "\\begin" not in (gold if theirs is None else answer)
    final = readable and "=" not in answer + gold
    items = tuple_items(gold) if mine is not None and len(mine[0]) == 1 else None
    if items is not None:
        same = _entries_equal(mine, tuple((item,) for item in items))
        return Verdict("ok" if same else "wrong", final, readable)
    return Verdict("wrong", final, readable)


def _entries_equal(mine: Entries, theirs: Entries) -> bool:
    """The same shape and every entry equal, in order; stops at the first entry that differs."""
    if len(mine) != len(theirs) or len(mine[0]) != len(theirs[0]):
        return False
    pairs = (pair for rows in zip(mine, theirs, strict=True) for pair in zip(*rows, strict=True))
    return all(_compare(a, b) == "ok" for a, b in pairs)


def _compare_parsed(mine: str, theirs: str) -> Verdict:
    gold_tree = _parsed_reference(theirs)
    if isinstance(gold_tree, UnsafeExpression):
        return Verdict("wrong", True)
    try:
        mine_tree = parse_latex(mine)
    except UnsafeExpression:
        return Verdict("wrong", True)
    except ValueError:
        return Verdict("parse_error", False)
    if isinstance(gold_tree, Exception):
        return Verdict("wrong", False)  # an unparseable gold only matches as a string, which failed above
    try:
        same = equivalent(mine_tree, gold_tree)
    except (TypeError, ValueError, AttributeError, ArithmeticError, RecursionError):
        return Verdict("wrong", False)  # comparisons sympy cannot decide count as different
    return Verdict("ok", True) if same else Verdict("wrong", False, _settled(mine_tree, gold_tree))


def _kind(tree: Any) -> str:
    if isinstance(tree, sympy.MatrixBase):
        return "matrix"
    if isinstance(tree, sympy.core.relational.Relational):
        return "relation"
    if isinstance(tree, sympy.Expr):
        return "number" if not tree.free_symbols else "expression"
    return type(tree).__name__


def _settled(mine: Any, gold: Any) -> bool:
    """Whether "different" is final, so that math-verify is not asked: the same kind of object over the same
    symbols (`2x+1` against `2x+2`), containers of numbers that differ (`(4, \\frac{\\pi}{12})`, `[2, 12)`,
    `\\{0, -3\\}` against `(0.5, 0.6)`), a number against a container, an equation, a polynomial or a
    single letter (`4x^3(2x^2+7)`, `C` against `-\\frac52`). Left open: a unit read as letters (`15cm^2`), a
    relation against an interval, a set against a tuple with the same elements, differing symbols."""
    kinds = {_kind(mine), _kind(gold)}
    if len(kinds) == 1:
        return getattr(mine, "free_symbols", None) == getattr(gold, "free_symbols", None)
    if kinds <= {"Tuple", "Interval", "Union", "FiniteSet"}:
        if getattr(mine, "free_symbols", True) or getattr(gold, "free_symbols", True):
            return False
        return kinds != {"Tuple", "FiniteSet"} or not _same_elements(mine, gold)  # `(1,3)` and `\\{1,3\\}`
    if "number" in kinds and kinds & {"Tuple", "Interval", "Union", "FiniteSet", "matrix", "relation"}:
        return True
    if kinds == {"number", "expression"}:
        return not _unit_like(mine if _kind(mine) == "expression" else gold)
    return kinds == {"expression", "Tuple"} or kinds == {"expression", "Interval"}


def _same_elements(a: Any, b: Any) -> bool:
    try:
        return equivalent(sympy.FiniteSet(*a.args), sympy.FiniteSet(*b.args))
    except (TypeError, ValueError, AttributeError, ArithmeticError, RecursionError):
        return True


def _unit_like(expression: Any) -> bool:
    """`15 c m^2`: a number other than 1 times small powers of symbols, how a unit reads once parsed."""
    factors = expression.args if isinstance(expression, sympy.Mul) else (expression,)
    numbers = [factor for factor in factors if factor.is_number]
    if not numbers or all(number in (1, -1) for number in numbers):
        return False
    return all(
        factor.is_number
        or isinstance(factor, sympy.Symbol)
        or (factor.is_Pow and factor.base.is_Symbol and factor.exp.is_Integer and 0 < factor.exp <= 3)
        for factor in factors
    )


@lru_cache(maxsize=8192)
def clean_gold(reference: str) -> str:
    """The gold answer without `$`/`$$`/`\\(...\\)` delimiters; a gold holding boxes is what its boxes hold,
    and a worked solution given as the gold is its stated answer."""
    gold = reference.strip()
    try:
        boxes = final_boxes(gold) if "\\boxed" in gold or "\\fbox" in gold else []
        stated = answer_is(gold) if not boxes and len(gold) > _SOLUTION_CHARS else None
    except ValueError:
        boxes, stated = [], None
    if boxes:
        gold = ", ".join(boxes)
    elif stated:
        gold = stated  # a worked solution given as the gold: its own stated answer
    return _INNER_DOLLARS.sub("", strip_delimiters(gold))  # `$a$, $b$`: one list


def compare(answer: str, reference: str) -> Status:
    """ok/wrong/parse_error for an extracted answer against the gold answer; see the module docstring."""
    gold = clean_gold(reference)
    answer = _INNER_DOLLARS.sub("", strip_delimiters(answer))
    if has_approx(answer) or has_approx(gold):
        return _compare_approx(answer, gold)
    return _compare(answer, gold)


def _compare_approx(answer: str, gold: str) -> Status:
    """`x = \\frac13 \\approx 0.33` against `\\frac13`: the exact value; against `\\frac13 \\approx 0.33`:
    both parts (a gold that gives its rounding makes the rounding part of the answer)."""
    mine, theirs = approx_parts(answer), approx_parts(gold)
    if len(mine) == len(theirs):
        verdicts = [_compare(a, b) for a, b in zip(mine, theirs, strict=True)]
        return "ok" if all(v == "ok" for v in verdicts) else next(v for v in verdicts if v != "ok")
    mine_value = mine[-1] if is_name(mine[0]) else mine[0]  # `x \\approx 11`: the value is the approximation
    gold_value = theirs[-1] if is_name(theirs[0]) else theirs[0]
    return _compare(mine_value, gold_value)


def _compare(answer: str, gold: str) -> Status:
    tuples = _tuple_equation_verdict(answer, gold)
    if tuples is not None:
        return tuples
    if _named_lists(answer, gold):  # `x=1, y=2` is an ordered, named answer; the parser reads a set
        same = normalize_answer(answer) == normalize_answer(gold) or _lists_equal(answer, gold)
        return "ok" if same else "wrong"
    first = _compare_one(answer, gold)
    chained = len(equation_sides(answer)) > 2 or len(equation_sides(gold)) > 2  # read whole, a chain is odd
    if first.status == "ok" or (first.final and not chained):
        return first.status
    if _other_readings_equal(answer, gold):
        return "ok"
    if (first.settled and not chained) or _both_lists(answer, gold):
        return first.status  # lists are ours to judge: math-verify reads `2, 1` as the set of `x=1, y=2`
    if VALUE_WORDS.search(answer) or VALUE_WORDS.search(gold):
        return first.status  # `5 less than y`, `3 million` (as words): math-verify would read letters
    return "ok" if answer and math_verify_equal(answer, gold) else first.status


def _tuple_equation_verdict(answer: str, gold: str) -> Status | None:
    """`(f(x), g(x)) = (x, 2)` is the list `f(x)=x, g(x)=2` and is judged as that list, names included (`(a,
    b) = (2, 1)` is not `a=1, b=2`); tuples of different lengths (`(a, b, c) = (1, 2)`) are no answer. None
    when neither side is an equation between tuples."""
    shapes = [tuple_equation(answer), tuple_equation(gold)]
    if shapes == [None, None]:
        return None
    if any(shape is not None and len(shape[0]) != len(shape[1]) for shape in shapes):
        return "wrong"
    mine, theirs = (distributed(text) or text for text in (answer, gold))
    if len(split_items(mine)) != len(split_items(theirs)):
        return None  # a tuple equation against a tuple or a value: the other readings decide
    return "ok" if _lists_equal(mine, theirs) else "wrong"


def _named_lists(answer: str, gold: str) -> bool:
    mine, theirs = _as_items(answer), _as_items(gold)
    if not len(mine) == len(theirs) >= 2:
        return False
    return any(_item_values(mine)[0]) or any(_item_values(theirs)[0])


def _both_lists(answer: str, gold: str) -> bool:
    """Lists are ours to judge: the same number of items, or one plain number against several."""
    mine, theirs = _as_items(answer), _as_items(gold)
    if len(mine) == len(theirs):
        return len(mine) >= 2
    single = mine if len(mine) == 1 else theirs if len(theirs) == 1 else None
    return single is not None and to_fraction(normalize_answer(single[0])) is not None


def _other_readings_equal(answer: str, gold: str) -> bool:
    for mine, theirs in _value_readings(answer, gold):
        if _compare_one(mine, theirs).status == "ok":
            return True
    if _lists_equal(answer, gold) or _intervals_equal(answer, gold) or _plus_minus_equal(answer, gold):
        return True
    return _regrouped_equal(answer, gold)


def _regrouped_equal(answer: str, gold: str) -> bool:
    """The same items grouped another way: `(f(x), g(x)) = (x, 2)` is `f(x)=x, g(x)=2`, and the sets
    `\\{1, 2\\}, \\{5, 6\\}` answer the flat gold `1, 2, 5, 6` (a gold without groups asks for none)."""
    members = set_members(answer)
    if members is None or set_members(gold) is not None or len(split_items(gold)) != len(members):
        return False
    return _match_unordered(members, split_items(gold))


def _value_readings(answer: str, gold: str) -> list[tuple[str, str]]:
    """`lhs = value` against a value compares the value: a final `|r-s| = 16` (any lhs: the answer says what
    it equals), and a gold `(p,q)=(3,2)` only when its lhs names a quantity (`a + 3z = 0` is no value 0)."""
    readings = []
    answer_sides, gold_sides = equation_sides(answer), equation_sides(gold)
    several = len(split_items(answer)) > 1  # `x = 11 or x = 12`, `x=5, y=6`: a list, not a chain to 12
    if len(answer_sides) > 1 and len(gold_sides) == 1 and answer_sides[-1] and not several:
        readings.append((answer_sides[-1], gold))
    if len(gold_sides) > 1 and len(answer_sides) == 1 and gold_sides[-1] and is_name(gold_sides[-2]):
        readings.append((answer, gold_sides[-1]))
    if len(answer_sides) >= 2 and len(gold_sides) >= 2 and len(answer_sides) + len(gold_sides) > 4:
        first_last = (f"{answer_sides[0]} = {answer_sides[-1]}", f"{gold_sides[0]} = {gold_sides[-1]}")
        readings.append(first_last)  # `z = 3+3 = 6` against `z = 6`: the chain's ends
    return readings


def _item_values(items: list[str]) -> tuple[list[str | None], list[str]]:
    pairs = [named_value(item) for item in items]
    return [name for name, _ in pairs], [value for _, value in pairs]


def _lists_equal(answer: str, gold: str) -> bool:
    """Lists and answer sets: the same values in any order (in order when the gold names each value with a
    different name, `x=1, y=2`); named items on both sides match by name."""
    mine, theirs = _as_items(answer), _as_items(gold)
    if len(theirs) < 2 and len(mine) < 2 or len(mine) != len(theirs) or len(mine) > _MAX_ITEMS:
        return False
    my_names, my_values = _item_values(mine)
    gold_names, gold_values = _item_values(theirs)
    named_mine, named_gold = _names(my_names), _names(gold_names)
    if named_mine and named_gold and sorted(named_mine) != sorted(named_gold):
        return _match_unordered(mine, theirs)  # `-x = 1` is not `x = 1`: names that differ are compared
    if all(my_names) and all(gold_names) and len(set(named_gold)) == len(named_gold):
        by_name = dict(zip(named_gold, gold_values, strict=True))
        pairs = zip(named_mine, my_values, strict=True)
        return all(_compare_one(value, by_name[name]).status == "ok" for name, value in pairs)
    ordered = all(gold_names) and len(set(gold_names)) == len(gold_names) and not any(my_names)
    if ordered:
        return all(_compare_one(a, b).status == "ok" for a, b in zip(my_values, gold_values, strict=True))
    if all(my_names) and all(gold_names):
        return _match_unordered(mine, theirs)  # `x=1, x=2` against `x=2, x=1`: whole equations
    return _match_unordered(my_values, gold_values)


def _names(names: list[str | None]) -> list[str]:
    return [name.replace(" ", "") for name in names if name]


def _match_unordered(mine: list[str], theirs: list[str]) -> bool:
    unmatched = list(theirs)
    for item in mine:
        index = next(
            (i for i, other in enumerate(unmatched) if _compare_one(item, other).status == "ok"), None
        )
        if index is None:
            return False
        unmatched.pop(index)
    return True


def _as_items(text: str) -> list[str]:
    """List items; solutions given as named groups (`p=5,q=2;p=7,q=2`) become tuples `(5,2)`."""
    found = groups(text)
    if len(found) > 1 and all(len(group) > 1 for group in found):
        tuples = []
        for group in found:
            names, values = _item_values(group)
            if not all(names):
                return split_items(text)
            tuples.append("(" + ",".join(values) + ")")
        return tuples
    return split_items(text)


def _as_interval(text: str) -> tuple[str | None, str] | None:
    """(variable or None, interval) for `0 < x < 1`, `x \\in [0, 1)` and a bare interval `(0, 1]`."""
    found = relation_interval(text)
    if found is not None:
        return found
    text = text.replace("\\left", "").replace("\\right", "")
    variable = _IN_SET.match(text)
    rest = text[variable.end() :] if variable else text
    rest = rest.strip()
    if rest[:1] in "([" and rest[-1:] in ")]" and "," in rest:
        return (variable.group(1) if variable else None), rest
    return None


def _intervals_equal(answer: str, gold: str) -> bool:
    """`x<3` equals `(-\\infty, 3)` and `x \\ge 2` equals `[2, \\infty)`: the same set, the same variable;
    `x < -2 \\text{ or } x > 3` equals `(-\\infty,-2) \\cup (3,\\infty)`."""
    if not any(mark in answer + gold for mark in ("<", ">", "\\le", "\\ge", "\\lt", "\\gt", "≤", "≥")):
        return False
    mine, theirs = _as_union(answer), _as_union(gold)
    if mine is None or theirs is None or (mine[0] and theirs[0] and mine[0] != theirs[0]):
        return False
    return _compare_one(mine[1], theirs[1]).status == "ok"


def _as_union(text: str) -> tuple[str | None, str] | None:
    """(variable, `I_1 \\cup I_2 ...`) for one interval or inequality, or several joined by "or" / `\\cup`."""
    parts = [part for part in _UNION_SPLIT.split(text) if part.strip()]
    if not 1 <= len(parts) <= _MAX_ITEMS:
        return None
    found = [_as_interval(part.strip()) for part in parts]
    if any(item is None for item in found):
        return None
    variables = {item[0] for item in found if item[0]}
    if len(variables) > 1:
        return None
    return (variables.pop() if variables else None), " \\cup ".join(item[1] for item in found)


def _plus_minus_equal(answer: str, gold: str) -> bool:
    """`\\pm 2021` equals the list `-2021, 2021`, and `1 \\pm \\sqrt{2}` the list of both roots."""
    for pm_side, other in ((answer, gold), (gold, answer)):
        if pm_side.count("\\pm") == 1 and not _mentions_plus_minus(other) and len(split_items(other)) == 2:
            both = pm_side.replace("\\pm", "+") + ", " + pm_side.replace("\\pm", "-")
            if pm_side.strip().startswith("\\pm"):
                both = pm_side.replace("\\pm", "", 1) + ", -" + pm_side.replace("\\pm", "", 1).strip()
            return _lists_equal(both, other)
    return False
