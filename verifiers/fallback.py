"""math-verify (Hugging Face's `math_verify`) as a second opinion behind rlvr's own comparison, in our guards.

Only the extracted answer and the gold reach it, never the response, and only its LaTeX reader (its plain-text
reader calls sympy's `parse_expr`, which evaluates Python). Its own `signal.alarm` timeouts are off: they need
the main thread, take whole seconds and cancel any timer of ours. Instead:

- input guards: both strings at most `MAX_CHARS` characters;
- magnitude guards: every parsed tree goes through `symbolic.check_size` (node count and the digits bound
  propagated through the whole tree) before math-verify compares, so nothing huge is ever evaluated;
- a wall-clock limit of `TIME_LIMIT_S` in the main thread (a `setitimer` of our own, the previous handler and
  timer restored after), where the pool's workers verify. In other threads only the guards apply.

Any error, refusal or time-out counts as "not equal": this layer can only turn a "wrong" into an "ok", and is
asked only where rlvr's own comparison is not final (see `MathVerifier.compare`).
"""

from __future__ import annotations

import contextlib
import logging
from functools import lru_cache
from typing import Any

import sympy

from verifiers.limits import TimeUp, time_limit
from verifiers.symbolic import UnsafeExpression, check_size

MAX_CHARS = 300
TIME_LIMIT_S = 0.5
logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call that its timeouts are off


def _guarded(parsed: list[Any]) -> list[Any]:
    """math-verify's parse result with every tree size-checked; empty when one is too big."""
    try:
        for item in parsed:
            if isinstance(item, sympy.Basic):
                check_size(item)
    except UnsafeExpression:
        return []
    return parsed


@lru_cache(maxsize=1)
def _math_verify() -> Any:
    try:
        import math_verify
        from math_verify.parser import LatexExtractionConfig
    except ImportError:  # an optional layer: without the package rlvr decides alone
        return None
    return math_verify, (LatexExtractionConfig(boxed_match_priority=0),)


def _parse(text: str) -> list[Any]:
    loaded = _math_verify()
    if loaded is None:
        return []
    module, config = loaded
    parsed = module.parse(f"\\boxed{{{text}}}", config, parsing_timeout=None)
    return _guarded(parsed)


@lru_cache(maxsize=4096)
def _parsed_gold(gold: str) -> list[Any]:
    with contextlib.suppress(Exception), time_limit(TIME_LIMIT_S):
        return _parse(gold)
    return []


def math_verify_equal(answer: str, gold: str) -> bool:
    """math-verify's verdict on an extracted answer against a gold answer, within the guards above."""
    if len(answer) > MAX_CHARS or len(gold) > MAX_CHARS or _math_verify() is None:
        return False
    try:
        with time_limit(TIME_LIMIT_S):
            gold_parsed = _parsed_gold(gold)
            if not gold_parsed:
                return False
            mine = _parse(answer)
            if not mine:
                return False
            return bool(_math_verify()[0].verify(gold_parsed, mine, timeout_seconds=None))
    except (TimeUp, Exception):
        return False
