"""Dataset builder, stages 2 and 3: keep only golds a string-matching verifier can check; turn multiple-choice
items into open-ended ones.

Both are pure functions of one candidate (see `sources.py`) that return the candidate with `answer` filled in
and/or `drop` set to a reason. Reasons are short fixed strings so the data card can count them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from rlvr.data.fields import MIXED_NUMBER, halfwidth, number_answer
from rlvr.data.sources import LETTERS
from verifiers import get_verifier
from verifiers.quality import flip_sign, perturb_last_digit

MAX_ANSWER_CHARS = 40
# stems that only make sense with the options in front of you
OPTION_DEPENDENT_STEM = re.compile(
    r"which of (the|these) (following|statements|options|choices|numbers|values|expressions)|"
    r"which (one|statement|option|choice|of them)\b|all of the above|none of the above|"
    r"\btrue or false\b|\b(the|these) following\b|\bfollowing (is|are|statements?)\b|"
    r"\bstatement (1|2|i|ii)\b|\bI and II\b|\bexcept\b|\bnot true\b|\bcorrect statement|"
    # a question that opens with "which" picks one of the options (`Which animal is warm-blooded?`)
    r"(?:^|[.?!:\n]\s*)which\b|\bif true\b|"
    # Chinese: "which of the following", "which one", "which is correct/wrong", "the options", "if true",
    # "best supports/weakens"
    r"下列|以下(?:哪|各|说法|结论|选项|列出|推理|陈述|论述|判断)|哪(?:一|个|项|些)|选项|正确的是|错误的是|"
    r"为真|最能|最不能",
    re.IGNORECASE,
)
# a stem that a word-valued option completes is a question only when it asks one (or leaves a blank)
ASKS = re.compile(r"[?？]\s*$|\(\s*\)|（[\s~]*）|_{2,}")
# options that point at other options, or at the list itself
OPTION_REFERS = re.compile(
    r"\b(all|none|both|neither) of (the )?(above|these|them|those)\b|\b[A-E] (and|or) [A-E]\b|"
    r"^(both|neither|all|none)\b|cannot be determined|can't be determined|not enough information|"
    r"\bnone\b|\babove\b",
    re.IGNORECASE,
)
PROOF_STEM = re.compile(r"\b(prove|show that|demonstrate that|justify|explain why|derive)\b", re.IGNORECASE)
# LaTeX control words and \text{...} wrappers do not count as words of prose
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# option answers written as words; larger numbers in options are written as digits
_NUMERALS = "zero one two three four five six seven eight nine ten eleven twelve"
NUMBER_WORDS = {word: str(i) for i, word in enumerate(_NUMERALS.split(" "))}


@lru_cache(maxsize=8)
def _verifier(spec: str) -> Any:
    return get_verifier(spec)


def prose_words(answer: str) -> int:
    """Words of natural language in an answer (LaTeX commands and single letters like x, i, e excluded);
    Chinese counts one word per two characters (`第三象限` is two words, `星期二` one)."""
    plain = _LATEX_COMMAND.sub(" ", answer.replace("\\text", " "))
    return len(_WORD.findall(plain)) + len(_HAN.findall(plain)) // 2


def verifiability_reason(answer: str, prompt: str, verifier: str) -> str:
    """ "" if `answer` is a short canonical gold that `verifier` checks by string matching, else why not.

    Checks, in order: there is an answer; it is short; it is not prose, several parts or a proof; the gold
    verifies against itself; a gold with its last digit changed (or its sign flipped) does not."""
    text = answer.strip()
    if not text:
        return "no_answer"
    if len(text) > MAX_ANSWER_CHARS:
        return "long_answer"
    if PROOF_STEM.search(prompt) and not any(c.isdigit() for c in text):
        return "proof"
    if prose_words(text) >= 2 or re.fullmatch(r"\\text\{[^}]*\}", text):
        return "text_answer"
    if re.search(r"[;]|\\text\{\s*(and|or)\s*\}|\band\b|\bor\b", text):
        return "multi_part"
    check = _verifier(verifier)
    boxed = f"The answer is \\boxed{{{text}}}."
    if not check.verify(boxed, text).correct:
        return "not_self_verified"
    for wrong in (perturb_last_digit(text), flip_sign(text)):
        if wrong is not None and wrong != text and check.verify(f"\\boxed{{{wrong}}}", text).correct:
            return "perturbed_gold_accepted"
    return ""


def filter_verifiable(row: dict[str, Any]) -> dict[str, Any]:
    """Stage 2 on one candidate (rows dropped earlier pass through untouched)."""
    if row["drop"]:
        return row
    return {**row, "drop": verifiability_reason(row["answer"], row["prompt"], row["verifier"])}


_NUMBER_WITH_UNIT = re.compile(
    r"^(?:rs\.?|inr|\$|€|£)?\s*(-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?)\s*"
    r"(?:%|[a-z]{1,6}\.?(?:\s*/\s*[a-z]{1,6}\.?)?|sq\.?\s*[a-z]+|cm\^?2|m\^?2)?$",
    re.IGNORECASE,
)


_ARTICLE = re.compile(r"^(?:a|an|the) (?=\S)", re.IGNORECASE)
_NUMBER_WITH_CHINESE_UNIT = re.compile(r"(-?\d+(?:\.\d+)?)\s*[\u4e00-\u9fff]{1,4}")  # `3 个客人`, `4间`


def option_answer(option: str) -> str:
    """The content of an option as an open-ended gold: `Rs. 250` -> `250`, `12 km/hr` -> `12`, `25%` -> `25%`,
    `1,200` -> `1200`, `7 1/2` -> `15/2`, `3 个客人` -> `3`, `Five` -> `5`, `a farmer` -> `farmer`,
    `丁偷。` -> `丁偷`; anything else is returned stripped."""
    text = halfwidth(option).strip().rstrip(".")
    if text.lower() in NUMBER_WORDS:
        return NUMBER_WORDS[text.lower()]
    if MIXED_NUMBER.fullmatch(text):
        return number_answer(text)
    if all(c.isalpha() or c in " '-" for c in text):  # `a farmer` -> `farmer`
        text = _ARTICLE.sub("", text)
    match = _NUMBER_WITH_UNIT.fullmatch(text) or _NUMBER_WITH_CHINESE_UNIT.fullmatch(text)
    if match:
        number = match.group(1).replace(",", "").replace(" ", "")
        return number + ("%" if text.endswith("%") else "")
    return text


def open_ended_reason(row: dict[str, Any]) -> str:
    """ "" if a multiple-choice item can be asked without its options, else why not."""
    choices, letter = row["choices"], row["letter"]
    if letter not in LETTERS[: len(choices)]:
        return "mc_bad_letter"
    if OPTION_DEPENDENT_STEM.search(row["prompt"]):
        return "mc_option_dependent_stem"
    # a distractor such as "none of these" does not tie a stem to its options; a correct one does
    if OPTION_REFERS.search(choices[LETTERS.index(letter)]):
        return "mc_options_refer_to_each_other"
    correct = option_answer(choices[LETTERS.index(letter)])
    others = [option_answer(c) for i, c in enumerate(choices) if i != LETTERS.index(letter)]
    if correct in others:
        return "mc_duplicate_options"
    if prose_words(correct) >= 2 or len(correct) > MAX_ANSWER_CHARS:
        return "mc_option_not_an_answer"
    if all(c.isalpha() or c in " '-" for c in correct) and not ASKS.search(row["prompt"]):
        return "mc_stem_completed_by_option"  # `their pulse rate` + `increases`: many words would do
    return ""


def to_open_ended(row: dict[str, Any]) -> dict[str, Any]:
    """Stage 3 on one candidate: a multiple-choice item becomes its stem with the correct option's content as
    the gold (the letter and options stay in meta via `choices`/`letter`), or is dropped with a reason.
    Open-ended rows pass through."""
    if row["drop"] or not row["choices"]:
        return row
    reason = open_ended_reason(row)
    if reason:
        return {**row, "drop": reason}
    answer = option_answer(row["choices"][LETTERS.index(row["letter"])])
    return {**row, "answer": answer}
