"""The `choice` verifier: multiple-choice answers given as a letter A–J or as the text of an option.

The letter is read, in order, from the last box (`\\boxed{B}`, `\\boxed{E: A polygenic risk score}`), from the
answers introduced by "answer" anywhere in the response, last first (`Answer: D`, `ANSWER: **A**`,
`**Final Answer:** B`; prose such as `The answer is a direct consequence of ...` introduces no letter, so
the article "a" is never read as option A), then from `(B)`, `option B` or a line holding only a letter in the
last 2,000 characters; else the boxed or stated text is matched against the options' texts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from verifiers.base import Status, Verifier, register_verifier
from verifiers.extract import UnbalancedBraces, answer_spans, last_boxed
from verifiers.normalize import normalize_answer

Check = tuple[Status, str | None, str | None]
_LETTERS = "ABCDEFGHIJ"
_ONLY_LETTER = re.compile(r"\(?([A-Ja-j])\)?[.:]?")
_LETTER_THEN_TEXT = re.compile(r"\(?([A-J])(?:\)|:|\.|\s-)\s")  # `E: text`, `(C) 25`, `B. text`
# Bounded quantifiers only: each pattern does a constant amount of work per position of the text.
_TRAILING_LETTER = re.compile(
    r"\(([A-J])\)|\b(?:option|choice)[ \t]{0,3}\(?([A-J])\b|^[ \t]{0,8}\(?([A-J])[).:]?[ \t]{0,8}$",
    re.IGNORECASE | re.MULTILINE,
)


def options_of(sample: Mapping[str, Any] | None) -> dict[str, str]:
    """Option letter → text from `sample["options"]` or `sample["choices"]` (a mapping or a list)."""
    raw = (sample or {}).get("options") or (sample or {}).get("choices") or {}
    if isinstance(raw, Mapping):
        return {str(k).strip().upper(): str(v) for k, v in raw.items()}
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        texts = [re.sub(r"^\(?[A-J]\)\s*", "", str(v)) for v in raw[: len(_LETTERS)]]  # "C)25" -> "25"
        return dict(zip(_LETTERS, texts, strict=False))
    return {}


def letter_of(text: str) -> str | None:
    """The option letter an answer names: `B`, `(b)`, `\\text{(C)}`, `**A**`, `E: text`, `E) text`."""
    text = normalize_answer(text.replace("*", ""), drop_variable=False)
    match = _ONLY_LETTER.fullmatch(text)
    return match.group(1).upper() if match else None


def _letter_with_text(text: str) -> str | None:
    stripped = text.replace("*", "").replace("\\text{", "").strip().strip("$").strip()
    match = _LETTER_THEN_TEXT.match(stripped + " ")
    return match.group(1) if match else None


@register_verifier("choice")
class ChoiceVerifier(Verifier):
    """Multiple choice: a letter A–J ("(B)", "Answer: B", `\\boxed{B}`) or the text of an option.

    The reference is the correct letter, or the correct option's text when `sample` carries the options.
    """

    name = "choice"
    reads_final_section = True

    def check(self, response: str, reference: str, sample: Mapping[str, Any] | None) -> Check:
        options = options_of(sample)
        gold = reference.strip().strip("()").upper()
        if gold not in _LETTERS or len(gold) != 1:
            by_text = {normalize_answer(v).casefold(): k for k, v in options.items()}
            gold = by_text.get(normalize_answer(reference).casefold(), "")
        if not gold:
            return "error", None, f"reference {reference[:40]!r} is neither a letter nor one of the options"
        try:
            boxed = last_boxed(response)
        except UnbalancedBraces as exc:
            return "parse_error", None, str(exc)
        letter, candidate = self._find_letter(response, boxed)
        if letter is None and candidate is not None:
            by_text = {normalize_answer(v).casefold(): k for k, v in options.items()}
            letter = by_text.get(normalize_answer(candidate).casefold())
        if letter is None:
            return "no_answer", candidate, None
        return ("ok" if letter == gold else "wrong"), letter, None

    @staticmethod
    def _find_letter(response: str, boxed: str | None) -> tuple[str | None, str | None]:
        """(letter or None, the boxed or stated answer text)."""
        stated = [answer for _, answer in answer_spans(response)]
        candidates = ([boxed] if boxed is not None else []) + stated
        for text in candidates:
            letter = letter_of(text) or _letter_with_text(text)
            if letter:
                return letter, text
        for match in reversed(list(_TRAILING_LETTER.finditer(response[-2000:]))):
            letter = next((group for group in match.groups() if group), None)
            if letter:
                return letter.upper(), candidates[0] if candidates else None
        return None, candidates[0] if candidates else None
