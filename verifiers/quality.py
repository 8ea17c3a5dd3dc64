"""Perturbations of gold answers, for measuring a verifier: a gold must verify against itself, and a perturbed
gold must not. Used by tests/test_verifier_quality.py (a sample) and `benchmarks/verifiers.py --full` (all).
"""

from __future__ import annotations

import re

_ZERO = re.compile(r"^[+-]?(0+\.?0*|\.0+)$")
_EQUALS_ZERO = re.compile(r"^[^=]*=\s*[+-]?0+$")


def perturb_last_digit(answer: str, step: int = 1) -> str | None:
    """The answer with its last digit d replaced by (d + step) mod 10; None without digits."""
    for i in range(len(answer) - 1, -1, -1):
        if answer[i] in "0123456789":
            return answer[:i] + str((int(answer[i]) + step) % 10) + answer[i + 1 :]
    return None


def flip_sign(answer: str) -> str | None:
    """The answer with a leading minus sign added or removed; None where that cannot change its meaning:
    no digits or letters, a leading zero (`-0,1` is the list `0,1`), or an equation `... = 0`."""
    text = answer.strip()
    first = text.split(",")[0].strip().replace("\\!", "")
    if not any(ch.isalnum() for ch in text) or _ZERO.match(first) or _EQUALS_ZERO.match(text):
        return None
    return text[1:].lstrip() if text.startswith("-") else "-" + text
