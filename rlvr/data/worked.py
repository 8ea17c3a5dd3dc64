"""Worked solutions for the SFT set (`sft_set.py`): the text of an assistant turn, from what a source gives.

- GSM8K: the solution without its calculator annotations (`<<48/2=24>>`), the `#### 72` line replaced by
  `The answer is \\boxed{72}.`;
- MAWPS (`X=((22.0-14.0)/4.0)`) and ASDiv (`7+2=9`, units in parentheses dropped): the expression evaluated
  one operation a line (`22 - 14 = 8`, `8 / 4 = 2`), a chain of one kind of operation on one line
  (`50 + 20 + 1 = 71`). `evaluate_steps` is a parser of its own over numbers, `+ - * /` and parentheses with
  exact fractions: nothing is `eval`-ed, and an expression is at most `MAX_EXPRESSION` characters;
- MathDial: a teacher-student dialogue as chat turns (the teacher is the assistant), `mathdial_turns`.

Every regular expression here is linear (no nested quantifiers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

ANSWER_LINE = "The answer is \\boxed{{{}}}."
MAX_EXPRESSION = 300  # characters: the parser recurses once per parenthesis
MAX_DECIMALS = 6  # a value with more decimal places is written as a fraction (10/3)

_ANNOTATION = re.compile(r"<<[^<>]*>>")
_TOKEN = re.compile(r"\s*(\d+\.?\d*|\.\d+|[-+*/()])")
_UNIT = re.compile(r"\s*\([^()\d]*\)")  # ASDiv: `6 (penny)*1 (cent/penny)`; never a group with a number
_VARIABLE = re.compile(r"\s*[A-Za-z]\w*\s*")
_RESULT = re.compile(r"\s*-?\d+\.?\d*\s*[A-Za-z ]*")  # ASDiv's right-hand side: `21`, `198 cents`
_SPEAKER = re.compile(r"\s*([A-Za-z][\w'-]*):")
_MOVE = re.compile(r"\A\(\w+\)\s*")  # MathDial's teacher move tag: `(focus)`, `(probing)`
_LEVEL = {"+": 0, "-": 0, "*": 1, "/": 1}


class Unreadable(ValueError):
    """An equation or dialogue this module cannot turn into turns (the row is dropped with the reason)."""


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Fraction | BinOp
    right: Fraction | BinOp


Node = Fraction | BinOp


def number_text(value: Fraction) -> str:
    """`8`, `2.5`, `-0.25`, or `10/3` where the decimal would not end within `MAX_DECIMALS` places."""
    if value.denominator == 1:
        return str(value.numerator)
    rest, twos, fives = value.denominator, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    places = max(twos, fives)
    if rest != 1 or places > MAX_DECIMALS:
        return f"{value.numerator}/{value.denominator}"
    digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
    return f"{'-' if value < 0 else ''}{digits[:-places]}.{digits[-places:]}"


def parse(expression: str) -> Node:
    """An arithmetic expression as a tree; Unreadable for anything but numbers, `+ - * /` and parentheses."""
    if len(expression) > MAX_EXPRESSION:
        raise Unreadable(f"expression longer than {MAX_EXPRESSION} characters")
    tokens, at = [], 0
    while at < len(expression.rstrip()):
        match = _TOKEN.match(expression, at)
        if not match:
            raise Unreadable(f"cannot read {expression[at:][:20]!r}")
        tokens.append(match.group(1))
        at = match.end()
    node, end = _sum(tokens, 0)
    if end != len(tokens):
        raise Unreadable(f"unexpected {tokens[end]!r}")
    return node


def _sum(tokens: list[str], at: int, level: int = 0) -> tuple[Node, int]:
    """Left-associative operators of `level` (0: `+ -`, 1: `* /`) over the next level's terms."""
    node, at = _sum(tokens, at, 1) if level == 0 else _atom(tokens, at)
    while at < len(tokens) and _LEVEL.get(tokens[at]) == level:
        op = tokens[at]
        right, at = _sum(tokens, at + 1, 1) if level == 0 else _atom(tokens, at + 1)
        node = BinOp(op, node, right)
    return node, at


def _atom(tokens: list[str], at: int) -> tuple[Node, int]:
    if at >= len(tokens):
        raise Unreadable("expression ends early")
    token = tokens[at]
    if token == "(":
        node, at = _sum(tokens, at + 1)
        if at >= len(tokens) or tokens[at] != ")":
            raise Unreadable("unbalanced parentheses")
        return node, at + 1
    if token == "-" and at + 1 < len(tokens) and tokens[at + 1][0].isdigit():  # `1.477/-7.0`
        return -Fraction(tokens[at + 1]), at + 2
    if token[0].isdigit() or token[0] == ".":
        return Fraction(token), at + 1
    raise Unreadable(f"unexpected {token!r}")


def _apply(op: str, left: Fraction, right: Fraction) -> Fraction:
    if op == "/" and right == 0:
        raise Unreadable("division by zero")
    return {"+": left + right, "-": left - right, "*": left * right}[op] if op != "/" else left / right


def _chain(node: Node) -> list[tuple[str, Fraction]] | None:
    """`a + b - c` (numbers joined by operators of one level, left to right) as [("", a), ("+", b), ("-",
    c)]; None for anything else."""
    if isinstance(node, Fraction):
        return [("", node)]
    if not isinstance(node.right, Fraction):
        return None
    left = _chain(node.left)
    if left is None or (len(left) > 1 and _LEVEL[left[1][0]] != _LEVEL[node.op]):
        return None
    return [*left, (node.op, node.right)]


def _reduce(node: Node, lines: list[str]) -> Fraction:
    """The value of `node`; appends one line per operation (a chain of one level: one line)."""
    if isinstance(node, Fraction):
        return node
    chain = _chain(node)
    if chain is not None:
        value = chain[0][1]
        for op, operand in chain[1:]:
            value = _apply(op, value, operand)
        shown = " ".join(f"{op} {number_text(x)}" if op else number_text(x) for op, x in chain)
    else:
        left, right = _reduce(node.left, lines), _reduce(node.right, lines)
        value = _apply(node.op, left, right)
        shown = f"{number_text(left)} {node.op} {number_text(right)}"
    lines.append(f"{shown} = {number_text(value)}")
    return value


def evaluate_steps(expression: str) -> tuple[Fraction, list[str]]:
    """The exact value of an arithmetic expression and the lines that work it out."""
    lines: list[str] = []
    value = _reduce(parse(expression), lines)
    return value, lines


def mawps_expression(equation: str) -> str:
    """`X=((22.0-14.0)/4.0)` -> `((22.0-14.0)/4.0)`; Unreadable where the unknown is not alone on the left
    (`X-6=52`, `(7.0*x)+4.0=...`)."""
    variable, sep, expression = equation.partition("=")
    if not sep or "=" in expression or not _VARIABLE.fullmatch(variable):
        raise Unreadable("not of the form x=<expression>")
    return expression


def asdiv_expression(formula: str) -> str:
    """`6 (penny)*1 (cent/penny) + 3 (nickel)*5 = 21 (cent)` -> `6*1 + 3*5`; Unreadable for several steps
    (`;`), comparisons, remainders and times."""
    expression, sep, result = _UNIT.sub("", formula).partition("=")
    if not sep or not _RESULT.fullmatch(result):
        raise Unreadable("not of the form <expression>=<number>")
    return expression


class EquationMismatch(Unreadable):
    """The equation evaluates, but not to the gold answer."""


def equation_solution(expression: str, gold: str) -> str:
    """The worked solution of `expression` ending in `\\boxed{gold}`; Unreadable where it has no operation
    or does not come to the gold (compared as exact numbers, to 1e-9 of the gold)."""
    value, lines = evaluate_steps(expression)
    if not lines:
        raise Unreadable("no arithmetic: the expression is a number")
    try:
        target = Fraction(gold)
    except (ValueError, ZeroDivisionError):
        raise Unreadable(f"gold {gold!r} is not a plain number") from None
    if abs(value - target) > Fraction(1, 10**9) * max(1, abs(target)):
        raise EquationMismatch(f"{expression.strip()} = {number_text(value)}, gold {gold}")
    return "\n".join([*lines, ANSWER_LINE.format(gold)])


def gsm8k_solution(solution: str, gold: str) -> str:
    """GSM8K's worked answer without `<<...>>` annotations; `#### N` becomes the boxed answer line."""
    body = _ANNOTATION.sub("", solution.split("####")[0])
    lines = [line.rstrip() for line in body.strip().splitlines() if line.strip()]
    return "\n".join([*lines, ANSWER_LINE.format(gold)])


def final_line_split(text: str) -> tuple[str, str]:
    """MathDial's solutions end with the final number on a line of its own: (the rest, that number)."""
    body, _, last = text.rstrip().rpartition("\n")
    return body.strip(), last.strip()


def mathdial_turns(conversation: str) -> list[dict[str, str]]:
    """`Teacher: (focus)...|EOM|Student: ...` as chat messages: the teacher's turns (move tag removed) are
    the assistant's, the student's (named `Student` or by name) the user's; consecutive turns of one role
    are joined by a newline. Unreadable for a turn without a speaker."""
    messages: list[dict[str, str]] = []
    for number, turn in enumerate(conversation.split("|EOM|"), start=1):
        match = _SPEAKER.match(turn)
        if not match:
            raise Unreadable(f"turn {number} names no speaker: {turn.strip()[:40]!r}")
        role = "assistant" if match.group(1) == "Teacher" else "user"
        text = turn[match.end() :].strip()
        if role == "assistant":
            text = _MOVE.sub("", text)
        append_turn(messages, role, text.strip())
    return messages


def append_turn(messages: list[dict[str, str]], role: str, text: str) -> None:
    """Adds a turn, joined to the last one where that has the same role; an empty text adds nothing."""
    if not text:
        return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"] += "\n" + text
    else:
        messages.append({"role": role, "content": text})
