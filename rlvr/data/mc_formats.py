"""Adapters for multiple-choice layouts a field mapping cannot read: options inside the instruction text
(MathQA and ARC/OpenBookQA as LLM-Adapters publish them), option objects (TAL-SCQ5K), and an `answerN` index
in place of a letter. Each returns the stem, the options without labels and the correct letter, as the
generic adapter does; `filters.to_open_ended` then decides whether the stem stands alone.
"""

from __future__ import annotations

import re
from typing import Any

from rlvr.data.fields import LETTERS, kept, text_field

_MATHQA_OPTIONS = " The options: "
_MATHQA_LABEL = re.compile(r"(?:^\s*|\s,\s)([A-E]) \) ")
# MathQA writes tokens apart (`rs . 1250`, `12.5 %`, `1 : 8`, `- 2`): rejoin them around these marks
_MATHQA_SPACED = re.compile(r" ?([.:/%]) ?")
_DOLLAR = re.compile(r"(?<!\\)\$")  # TAL's maths delimiters (`$$5$$`, `$\frac37$`, a stray `$$2$$$`)
_ARC_PREFIX = "Please choose the correct answer to the question: "
_ARC_LABEL = re.compile(r"\s*Answer(\d+):\s*")
_ARC_ANSWER = re.compile(r"answer(\d+)")


def _labelled(parts: list[str], labels: str) -> list[str]:
    """`re.split` output ['', label, text, label, text, ...] -> texts, checking the labels run in order."""
    found = parts[1::2]
    if parts[0].strip() or found != list(labels[: len(found)]) or len(found) < 2:
        raise ValueError(f"options labelled {found}, expected {list(labels[:2])}...")
    return [t.strip() for t in parts[2::2]]


def mathqa_options(text: str) -> str:
    """A MathQA option as written in the LLM-Adapters copy: its a-e letters were upper-cased everywhere
    (`DAtA inADEquAtE`), so it is lower-cased back; tokens around `.`, `:`, `/`, `%` and a sign rejoin."""
    text = _MATHQA_SPACED.sub(r"\1", text.lower())
    return "-" + text[2:] if text.startswith("- ") else text


def mathqa_mc(record: dict[str, Any]) -> dict[str, Any]:
    """MathQA test (LLM-Adapters): `<problem> The options: A ) 38 , B ) 27.675 , ...` and the letter."""
    instruction = text_field(record, "instruction")
    stem, found, options = instruction.rpartition(_MATHQA_OPTIONS)
    if not found or not stem.strip():
        raise ValueError("instruction has no 'The options:' list")
    options = options.strip()
    if options.startswith("['") and options.endswith("']"):  # 66 rows hold the Python text of a list
        options = options[2:-2].replace("', '", " , ")
    choices = [mathqa_options(o) for o in _labelled(_MATHQA_LABEL.split(options), LETTERS[:5])]
    return {"prompt": stem, "choices": choices, "letter": text_field(record, "answer").strip().upper()}


def arc_mc(record: dict[str, Any]) -> dict[str, Any]:
    """ARC and OpenBookQA (LLM-Adapters): the question, a paragraph `Answer1: ... Answer2: ...` and an
    answer `answerN` (1-based)."""
    paragraphs = text_field(record, "instruction").removeprefix(_ARC_PREFIX).split("\n\n")
    block = next((i for i, p in enumerate(paragraphs) if p.startswith("Answer1:")), None)
    if not block:
        raise ValueError("instruction has no 'Answer1: ...' paragraph after the question")
    numbers = [str(i + 1) for i in range(len(LETTERS))]
    choices = _labelled(_ARC_LABEL.split(paragraphs[block]), "".join(numbers[:9]))
    answer = _ARC_ANSWER.fullmatch(text_field(record, "answer").strip().lower())
    if not answer or not 1 <= int(answer.group(1)) <= len(choices):
        raise ValueError(f"answer {record.get('answer')!r} is not answer1..answer{len(choices)}")
    meta = {"split": record["_src_file"]} if record.get("_src_file") else {}
    return {
        "prompt": "\n\n".join(paragraphs[:block]),
        "choices": choices,
        "letter": LETTERS[int(answer.group(1)) - 1],
        "meta": meta,
    }


def tal(record: dict[str, Any]) -> dict[str, Any]:
    """TAL-SCQ5K: `answer_option_list` of [{aoVal, content}] and the letter `answer_value`. Its inline maths
    is `$$...$$`: `$...$` in the stem, and no `$` in the options (the gold is an option's content)."""
    options = record.get("answer_option_list")
    if not isinstance(options, list) or not options:
        raise ValueError("field 'answer_option_list' missing or not a list")
    labels, choices = [], []
    for option in options:
        item = option[0] if isinstance(option, list) and option else option
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise ValueError("an option is not {aoVal, content}")
        labels.append(str(item.get("aoVal", "")).strip().upper())
        choices.append(_DOLLAR.sub("", item["content"]).strip())
    if labels != list(LETTERS[: len(labels)]):
        raise ValueError(f"options labelled {labels}")
    analysis = record.get("answer_analysis")
    meta = kept(record, ("difficulty", "_src_file"))
    if isinstance(analysis, list) and analysis and isinstance(analysis[0], str):
        meta["solution"] = analysis[0].replace("$$", "$").strip()
    return {
        "prompt": text_field(record, "problem").replace("$$", "$"),
        "choices": choices,
        "letter": text_field(record, "answer_value").strip().upper(),
        "meta": meta,
    }
