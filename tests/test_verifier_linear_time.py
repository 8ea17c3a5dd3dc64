"""Every function that reads model text runs in time linear in its length.

Python's regex engine backtracks: a pattern with two quantifiers that can match the same characters side by
side (`(\\w+\\s*)+$`, `\\d+\\.?\\d*`, `\\s*(is)?\\s*:?\\s*`) is quadratic or exponential on the wrong input,
so one response can stall a verifier for minutes. Each text-facing function is timed on adversarial inputs of
growing length; eight times the input may cost at most ~20 times the time (linear is 8, quadratic 64), with a
floor so that microsecond timings do not count as growth, and a hard stop per call.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from verifiers import answers, extract, get_verifier, matrices, normalize
from verifiers.choice import letter_of
from verifiers.symbolic import UnsafeExpression

SMALL, FACTOR = 2_000, 8
MAX_GROWTH = 20.0
FLOOR_S = 0.005  # timings under this are noise, not growth
HARD_STOP_S = 10.0

# name -> text of about n characters; each aims at a pattern kind that backtracks.
SHAPES: dict[str, Callable[[int], str]] = {
    "unit words": lambda n: "18 " + "dollars " * (n // 8) + "!",
    "letters": lambda n: "a" * n,
    "spaces": lambda n: "answer" + " " * n + "#",
    "newlines": lambda n: "\n" * n + "A",
    "answer is": lambda n: "The answer is " * (n // 14),
    "answer colon": lambda n: "Answer: " * (n // 8) + "x",
    "digits": lambda n: "1" * n + "x",
    "digits and dots": lambda n: "1." * (n // 2) + "x",
    "thousands": lambda n: "1," * (n // 2) + "x",
    "boxes": lambda n: "\\boxed{" * (n // 7),
    "closed boxes": lambda n: "\\boxed{1} and " * (n // 14),
    "braces": lambda n: "{" * n,
    "dollars": lambda n: "$" * n,
    "nested text": lambda n: "\\text{" * (n // 6) + "}" * (n // 6),
    "degree spaces": lambda n: "^" + " " * n + "x",
    "percent spaces": lambda n: "5" + " " * n + "x",
    "parentheses": lambda n: "(" * n,
    "equals": lambda n: "x=" * (n // 2),
    "relations": lambda n: "x<" * (n // 2),
    "and": lambda n: "1 and " * (n // 6),
    "frac": lambda n: "\\frac{" * (n // 6),
    "sqrt": lambda n: "\\sqrt(" * (n // 6),
    "therefore": lambda n: "Therefore x is " * (n // 15),
    "options": lambda n: "(A) option B " * (n // 13),
    "letter lines": lambda n: "A\n" * (n // 2),
    "pi and exp": lambda n: "exp(pi" * (n // 6),
    "think tags": lambda n: "<think>1</think>" * (n // 16) + "<think>",
    "answer tags": lambda n: "<answer>" * (n // 8) + "</answer>" * (n // 18),
    "tag gaps": lambda n: "< \t/ \t" * (n // 6) + "answer",
    "mixed numbers": lambda n: "1 1/2 2\\frac{1}{3}" * (n // 18),
    "digit gaps": lambda n: "1 " * (n // 2) + "/2",
    "matrix rows": lambda n: "\\begin{pmatrix}" + "1\\\\" * (n // 3) + "\\end{pmatrix}",
    "matrix cells": lambda n: "\\left(\\begin{array}{cc}" + "1&" * (n // 2) + "\\end{array}\\right)",
    "matrix begins": lambda n: "\\begin{bmatrix}" * (n // 15) + "\\end{bmatrix}",
    "left wrappers": lambda n: "\\left(" * (n // 6) + "\\right)" * (n // 7),
    "tuple": lambda n: "(" + "1, " * (n // 3) + ")",
    "money": lambda n: "The answer is $1" + " $1." * (n // 4),
    "escaped dollars": lambda n: "\\$" * (n // 2) + "1",
    "currency codes": lambda n: "USD " * (n // 4) + "18",
    "ruled out": lambda n: "5, not " * (n // 7) + "6",
    "nots": lambda n: "not " * (n // 4) + "6",
    "braced thousands": lambda n: "1{,}000" * (n // 7) + "{,}",
    "thin-space thousands": lambda n: "1\\,000,\\!" * (n // 10),
    "final commas": lambda n: "72" + ",;" * (n // 2),
    "empty boxes": lambda n: "\\boxed{}" * (n // 8),
    "hedges": lambda n: "maybe 4, or " * (n // 12) + "5",
    "glued units": lambda n: "1m²" * (n // 3) + "5 m^{2",
    "closing maths": lambda n: "$x$ " * (n // 4) + "is $5$",
    "open maths": lambda n: "is $" * (n // 4) + "5$.",
    "sets": lambda n: "\\{1, 2\\}, " * (n // 12) + "\\{",
    "tuple equations": lambda n: "(a, b) = (" * (n // 10) + "1, 2)",
    "clock times": lambda n: "4:30p.m." * (n // 8),
    "lost dollars": lambda n: "\\\\2" * (n // 3),
    "number words": lambda n: "3 million " * (n // 10) + "thousand",
    "qualified closings": lambda n: "Suppose x is 5 less than " * (n // 25) + "12.",
    "named values": lambda n: "$x = " * (n // 5) + "5$.",
    "exponents": lambda n: "25 m^{2" * (n // 7) + ".",
}

_BIG = {"max_response_chars": 10**7}
_MATRIX_GOLD = "\\begin{pmatrix}1\\\\2\\end{pmatrix}"
FUNCTIONS: dict[str, Callable[[str], object]] = {
    "normalize_answer": normalize.normalize_answer,
    "strip_units": normalize.strip_units,
    "fix_shorthand": normalize.fix_shorthand,
    "to_fraction": normalize.to_fraction,
    "last_boxed": lambda t: _quiet(extract.last_boxed, t),
    "final_boxes": lambda t: _quiet(extract.final_boxes, t),
    "answer_spans": extract.answer_spans,
    "gsm8k_answer": extract.gsm8k_answer,
    "last_number": extract.last_number,
    "bare_answer": extract.bare_answer,
    "stated_answer": extract.stated_answer,
    "final_answer": lambda t: _quiet(extract.final_answer, t),
    "final_section": extract.final_section,
    "closing_number": extract.closing_number,
    "closing_math": extract.closing_math,
    "set_members": answers.set_members,
    "distributed": answers.distributed,
    "clock_time": answers.clock_time,
    "split_items": answers.split_items,
    "equation_sides": answers.equation_sides,
    "relation_interval": answers.relation_interval,
    "read_matrix": lambda t: _quiet(matrices.read_matrix.__wrapped__, t),  # uncached: timed thrice
    "tuple_items": matrices.tuple_items,
    "letter_of": letter_of,
    "math": lambda t: get_verifier("math", **_BIG).verify(t, "18"),
    "math, matrix gold": lambda t: get_verifier("math", **_BIG).verify(t, _MATRIX_GOLD),
    "numeric": lambda t: get_verifier("numeric", **_BIG).verify(t, "18"),
    "exact": lambda t: get_verifier("exact", **_BIG).verify(t, "18"),
    "choice": lambda t: get_verifier("choice", **_BIG).verify(t, "A"),
}


def _quiet(function: Callable[[str], object], text: str) -> object:
    try:
        return function(text)
    except (extract.UnbalancedBraces, UnsafeExpression):
        return None


class _Stalled(BaseException):
    pass


@contextmanager
def _hard_stop(seconds: float) -> Iterator[None]:
    def stop(signum: int, frame: object) -> None:
        raise _Stalled

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _seconds(function: Callable[[str], object], text: str) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        with _hard_stop(HARD_STOP_S):
            function(text)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_time_grows_linearly(function: str) -> None:
    grew = {}
    for shape, make in SHAPES.items():
        small, big = make(SMALL), make(SMALL * FACTOR)
        try:
            t_small, t_big = _seconds(FUNCTIONS[function], small), _seconds(FUNCTIONS[function], big)
        except _Stalled:
            pytest.fail(f"{function} on {shape!r} ({len(big)} chars) ran past {HARD_STOP_S:g}s")
        growth = t_big / max(t_small, FLOOR_S)
        if growth > MAX_GROWTH or t_big > 1.0:
            grew[shape] = (round(t_small, 4), round(t_big, 4))
    assert not grew, f"{function}: super-linear on {grew}"


def test_the_reported_stall_is_fast_and_right() -> None:
    response = "The final answer is $\\boxed{18 dollars is what she makes every day at the market!}$."
    for name, reference in (
        ("math", "18"),
        ("exact", "18 dollars is what she makes every day at the market!"),
    ):
        started = time.monotonic()
        assert get_verifier(name).verify(response, reference).correct
        assert time.monotonic() - started < 0.5
    started = time.monotonic()
    assert (
        get_verifier("numeric")
        .verify("#### 18 dollars is what she makes every day at the market!", "18")
        .correct
    )
    assert get_verifier("choice").verify(response, "A").status == "no_answer"
    assert time.monotonic() - started < 0.5
