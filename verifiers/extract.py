"""Find the answer in a model's response: the last `\\boxed{}`, a GSM8K `#### x` line, "the answer is x", or
the last number. Pure string scanning in linear time; nothing here parses or evaluates maths.
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?\s*(.+?)\s*(?:$|\n|\.\s|\.$)",
    re.IGNORECASE,
)
_GSM8K_ANSWER = re.compile(r"####\s*([^\n]+)")
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?|-?\.\d+")


class UnbalancedBraces(ValueError):
    """A `\\boxed{` whose braces never close: an answer was started but cannot be read."""


def _braced(text: str, start: int) -> tuple[str, int]:
    """The contents of the `{...}` group opening at `text[start]`, and the index just past it.

    `\\{` and `\\}` are literal braces in LaTeX and do not count towards nesting.
    """
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    raise UnbalancedBraces("unbalanced braces after \\boxed")


def last_boxed(text: str) -> str | None:
    """Contents of the last `\\boxed{...}` / `\\fbox{...}` (brace-matched) or of `\\boxed 5`; None if absent.

    Raises UnbalancedBraces when the last box never closes.
    """
    position, command = max((text.rfind(command), command) for command in _BOX_COMMANDS)
    if position < 0:
        return None
    after = position + len(command)
    start = after + len(text[after : after + 100]) - len(text[after : after + 100].lstrip(" "))
    if start < len(text) and text[start] == "{":
        return _braced(text, start)[0].strip()
    match = re.match(r" +([^\s$]+)", text[after:])  # "\boxed 5": the box holds the next token
    return match.group(1) if match else None


def answer_is(text: str) -> str | None:
    """The text after the last "the answer is" / "Answer:", without surrounding `$` and final period."""
    matches = _ANSWER_IS.findall(text[-2000:])
    if not matches:
        return None
    answer = matches[-1].strip().strip("$").strip()
    return answer.rstrip(".").strip() or None


def gsm8k_answer(text: str) -> str | None:
    """The answer after the last `####` marker (GSM8K's format)."""
    matches = _GSM8K_ANSWER.findall(text)
    return matches[-1].strip() if matches else None


def last_number(text: str) -> str | None:
    """The last decimal number in the text, thousands separators included ("1,234.5")."""
    matches = _NUMBER.findall(text[-2000:])
    return matches[-1] if matches else None


def final_answer(text: str) -> str | None:
    """The strict math extraction: the last box, else "the answer is X". Raises UnbalancedBraces."""
    boxed = last_boxed(text)
    return boxed if boxed is not None else answer_is(text)
