"""Find the answer in a model's response: the final section of a reasoning model's output (`final_section`:
the last `<answer>` block, else what follows the last `</think>`), then in it the boxes of the final answer,
"the answer is x" / "Answer: x" anywhere, a GSM8K `#### x` line, a response that is nothing but maths, or
the last number.

Everything here runs in time linear in the response: scanners walk the text once, and every regular expression
either is anchored to a short window or has no two quantifiers that can match the same characters (Python's
engine backtracks, and such pairs make it quadratic or exponential). Nothing here parses or evaluates maths.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from verifiers.normalize import GLUED_UNIT, VALUE_WORDS

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_WORD = re.compile(r"answer", re.IGNORECASE)
_CONNECTOR = re.compile(
    r"(?:s)?\W{0,6}?(?:\s(?:is|was|will\sbe|would\sbe|should\sbe|are)\b|:|=)?[\s*:]{0,12}", re.IGNORECASE
)
_VERB = re.compile(r"\b(?:is|was|be|are)\b", re.IGNORECASE)
_MATH_OPENERS = ("\\(", "\\[", "$$")
_IS_THE_ANSWER = re.compile(
    r"\s(?:is|are|as)\s(?:the|our|my)\s(?:final\s)?(?:answer|solution|result)\b", re.I
)
_CONCLUSION = re.compile(
    r"\b(?:therefore|thus|hence|so|in conclusion|in total|finally|consequently)\b,?", re.I
)
_TRAILING_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?$")
_VALUE_START = re.compile(r"[-+(\[{\\\d.]")  # a number, a bracket or a command: maths, not words
_TAIL_CHARS = 700
_MAX_AFTER_CONCLUSION = 160  # "I hope it is correct." and the like may follow the concluding sentence
_GSM8K_ANSWER = re.compile(r"####\s*([^\n]+)")
# Thousands separated by `,`, `{,}`, `,\!` or `\,` (`9{,}500` is one number, not 500).
_NUMBER = re.compile(r"-?\d+(?:(?:,|\{,\}|,\\!|\\,)\d{3})*(?:\.\d+)?|-?\.\d+")
# A number the response rules out (`5, not 6`, `5 rather than 6`): searched only in a short window before it.
_RULED_OUT_BEFORE = re.compile(r"\b(?:not|rather\sthan|instead\sof)\s{1,3}(?:\\?\$|[€£])?\s?$", re.I)
_RULED_OUT_WINDOW = 20
# An answer going on to rule out another value: `5, not 6`, `5 (not 6)`, `5, but not 6`, `5 rather than 6`.
_RULED_OUT_AFTER = re.compile(
    r"[,;(]\s{0,3}(?:and\s{1,3}|but\s{1,3})?not\s|\s(?:rather\sthan|instead\sof)\s", re.I
)
# What ends just before a last number and makes it part of one value: `7 1/` (→ `7 1/2`), `1/`, `\\frac{15}{`.
# Searched only in a short window before the number (`pos`/`endpos`), so the search is bounded.
_FRACTION_BEFORE = re.compile(r"(?:(?<![\w./])-?\d{1,20} )?(?<![\w./])\d{1,20} ?/ ?$")
_FRAC_BEFORE = re.compile(r"(?:(?<![\w./])-?\d{1,20} ?)?\\[dt]?frac\{\d{1,20}\}\{$")
_VALUE_WINDOW = 48
# A guess among values: a hedging word in the number's sentence, or "or" just before it (`42, or 43`).
_HEDGE = re.compile(r"\b(?:maybe|perhaps|possibly|probably|might|could|guess)\b|\bor$", re.I)
# A sentence that does not state its closing value as the result: an assumption, a case, a check, a
# negation (`Suppose $x = 5$.`, `This is false when $x=5$.`, `The result is never 12.`) ...
_NOT_STATED = re.compile(
    r"\b(?:suppose|assume|assuming|let|consider|if|when|whether|unless|substitut\w*|plug\w*|try|check|"
    r"show|prove|false|case|need)\b",
    re.I,
)
# ... or that denies the value right before it (`The solution is not $x = 5$.`, `It can't be 12.`) ...
_DENIED = re.compile(r"\b(?:not|never|hardly|no|(?:can't|cannot|isn't|wasn't)(?:\sbe)?)$", re.I)
# ... or a bound or a range rather than the value (`greater than 5`, `at least 5`, `from 3 to 12`).
_COMPARED = re.compile(r"\b(?:than|least|most|between|from\b.{0,40}\bto)$|\d\s{1,3}to$", re.I)
# What follows a closing number and makes it part of something else (`5 pi`, `2 squared`, `3 million`,
# `5 less than y`, `4 or 5`).
_QUALIFIED = re.compile(VALUE_WORDS.pattern + r"|\b(?:or|and|to)\b|π", re.I)
# A value's own name before it (`$x = `), left out when the sentence before the value is read.
_NAMED_BEFORE = re.compile(r"[$(\\\s]{0,4}(?:[A-Za-z](?:_\{?\w{1,8}\}?)?\s{0,3}=\s{0,3})?[$(\\\s]{0,4}$")
_HEDGE_WINDOW = 120
_EXPONENT_BEFORE = re.compile(r"[\^_]\{?$")  # the 2 of `m^2`, `m^{2}`, `x_2`: no value of its own
_POWER = re.compile(r"\^\{?\d\}?")
_DIGITS = frozenset("0123456789")  # not str.isdigit: `²` is a digit to it, and a unit here
# A unit or currency after a response's last number (`1,000.99€`, `12m²`, `15 cm^2`, `40%`): the number is
# whole, even without a closing period.
_ENDING_UNIT = re.compile(r" ?(?:[€£¥%°]|\\%|" + GLUED_UNIT + r"|min)\.?\**$")
_INTRODUCES = re.compile(r"\b(?:is|are|was|equals|be|gives|get|obtain)$|=$")
_INNER_IS = re.compile(r"\s(?:is|are|was|equals|=)\s")
_PROSE_STARTS = frozenset(
    [
        "correct",
        "incorrect",
        "wrong",
        "right",
        "not",
        "that",
        "this",
        "these",
        "as",
        "because",
        "given",
        "in",
        "to",
        "a",
        "an",
        "the",
        "obtained",
        "found",
        "shown",
        "below",
        "above",
        "clear",
        "clearly",
        "consistent",
        "reasonable",
        "indeed",
        "therefore",
        "based",
        "provided",
        "option",
    ]
)
_NOT_ANSWERS = frozenset(("correct", "incorrect", "wrong", "right", "below", "above", "clear", "obvious"))
_MAX_ANSWER_CHARS = 400
_MAX_ANSWER_TRIES = 40  # "answer" occurrences looked at, from the last one back
_MAX_GROUP_BOXES = 16
_MAX_EMPTY_BOXES = 4  # empty boxes skipped from the end before giving up
_MAX_GAP_CHARS = 60
_GAP_WORDS = frozenset(("and", "or", "text", "quad", "qquad", "mbox", "textbf", "mathrm", "hspace"))
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+")
_ENVIRONMENT = re.compile(r"\\(?:begin|end)\{[a-zA-Z]+\*?\}")  # `\begin{pmatrix}`: maths, no words
_GAP_PUNCTUATION = re.compile(r"[{}$,;.:()\[\]\\=_\s*!+-]+")


# `<think>`, `</think>`, `<answer>`, `< /ANSWER >`, `<thinking>`, `<reasoning>`: bounded gaps, linear.
_TAG = re.compile(r"<[ \t]{0,8}(/?)[ \t]{0,8}(think|thinking|reasoning|answer)[ \t\n]{0,8}>", re.IGNORECASE)


class _Tag(NamedTuple):
    start: int
    end: int
    closing: bool
    thinking: bool


def final_section(text: str) -> str | None:
    """The part of a response that holds its final answer: the last `<answer>...</answer>` block after the
    thinking, else the text after the last `</think>`, else the whole text. None when the response stops
    inside a `<think>` block (cut off mid-thought): it has no final answer, and a draft inside the thinking
    never counts. An `<answer>` that never closes runs to the end (a `</answer>` stop string is cut off)."""
    if "<" not in text:
        return text
    found = _TAG.finditer(text)
    tags = [_Tag(m.start(), m.end(), bool(m.group(1)), m.group(2).lower() != "answer") for m in found]
    thinking = [tag for tag in tags if tag.thinking]
    if thinking and not thinking[-1].closing:
        return None
    start = thinking[-1].end if thinking else 0
    answers = [tag for tag in tags if not tag.thinking and tag.start >= start]
    opening = next((tag for tag in reversed(answers) if not tag.closing), None)
    if opening is None:
        return _TAG.sub(" ", text[start:]) if answers else text[start:]  # a stray `</answer>`
    closing = next((tag for tag in answers if tag.closing and tag.start >= opening.end), None)
    return text[opening.end : closing.start if closing else len(text)]


class UnbalancedBraces(ValueError):
    """A `\\boxed{` whose braces never close: an answer was started but cannot be read."""


def _braced(text: str, start: int, stop: int | None = None) -> tuple[str, int]:
    """The contents of the `{...}` group opening at `text[start]`, and the index just past it.

    `\\{` and `\\}` are literal braces in LaTeX and do not count towards nesting. Scans at most to `stop`.
    """
    depth = 0
    i = start
    end = len(text) if stop is None else min(stop, len(text))
    while i < end:
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


def _box_before(text: str, end: int) -> tuple[int, str]:
    """The last box command starting before `end`: (position, command), position -1 if none."""
    return max((text.rfind(command, 0, end), command) for command in _BOX_COMMANDS)


def _box_at(text: str, position: int, command: str, stop: int | None = None) -> tuple[str, int] | None:
    """Contents and end of the box whose command starts at `position` (None: `\\boxed` without a token)."""
    after = position + len(command)
    start = after + len(text[after : after + 100]) - len(text[after : after + 100].lstrip(" "))
    if start < len(text) and text[start] == "{":
        contents, end = _braced(text, start, stop)
        return contents.strip(), end
    match = re.match(r" +([^\s$]+)", text[after : after + 200])  # "\boxed 5": the box holds the next token
    return (match.group(1), after + match.end()) if match else None


def last_boxed(text: str) -> str | None:
    """Contents of the last `\\boxed{...}` / `\\fbox{...}` (brace-matched) or of `\\boxed 5`; None if absent.

    Raises UnbalancedBraces when the last box never closes.
    """
    span = last_box_span(text)
    return None if span is None else span[0]


def last_box_span(text: str) -> tuple[str, int, int] | None:
    """(contents, start, end) of the last box that holds something, or None. An empty `\\boxed{}` is no
    answer: it is skipped, so an instruction echoed after the answer (`... put your final answer within
    \\boxed{}.`) does not hide the box before it. Raises UnbalancedBraces when the last box never closes.
    Linear: each earlier box is brace-matched only up to the box after it."""
    end = stop = len(text)
    for _ in range(_MAX_EMPTY_BOXES + 1):
        position, command = _box_before(text, end)
        if position < 0:
            return None
        if stop == len(text):
            found = _box_at(text, position, command)
        else:
            try:  # an earlier box that would run into the empty one after it (`\\boxed{\\boxed{}}`)
                found = _box_at(text, position, command, stop=stop)
            except UnbalancedBraces:
                return None
        if found is None:
            return None
        if found[0]:
            return found[0], position, found[1]
        end = stop = position
    return None


def _connective_gap(gap: str) -> bool:
    """Whether the text between two boxes only joins them: `, `, ` and `, `$ or $x=`, `\\quad \\text{and}`."""
    if len(gap) > _MAX_GAP_CHARS:
        return False
    words = _GAP_PUNCTUATION.sub(" ", _LATEX_COMMAND.sub(lambda m: " " + m.group(0)[1:] + " ", gap)).split()
    if any(word.lower() in ("and", "or") for word in words) and len(gap) <= 40:
        return True  # `\\boxed{1} papers and \\boxed{2}`: a short gap that joins with "and"
    return all(word.lower() in _GAP_WORDS or _short_name(word) for word in words)


def _short_name(word: str) -> bool:
    """`x`, `y_2`'s pieces, `37`: the variable names and subscripts of `x = \\boxed{2}` between boxes."""
    return (len(word) == 1 and word.isalpha()) or word.isdigit()


def final_boxes(text: str) -> list[str]:
    """The boxes of the final answer: the last box and the boxes just before it that only connectives
    separate (`\\boxed{3}, \\boxed{5} and \\boxed{7}`), in order. Empty without a box. Linear: each earlier
    box is brace-matched only up to the start of the box after it."""
    span = last_box_span(text)
    if span is None:
        return []
    boxes, start = [span[0]], span[1]
    while len(boxes) < _MAX_GROUP_BOXES:
        position, command = _box_before(text, start)
        if position < 0:
            break
        try:
            found = _box_at(text, position, command, stop=start)
        except UnbalancedBraces:
            break
        if found is None or not _connective_gap(text[found[1] : start]):
            break
        boxes.append(found[0])
        start = position
    return boxes[::-1]


def _answer_end(text: str, start: int) -> int:
    """Where an answer that starts at `start` ends: a sentence end or line break outside maths and braces."""
    i, end, depth, math = start, min(len(text), start + _MAX_ANSWER_CHARS), 0, ""
    while i < end:
        char = text[i]
        if char == "\\" and i + 1 < end:
            pair = text[i : i + 2]
            if pair in ("\\(", "\\["):
                math = math or pair
            elif pair in ("\\)", "\\]") and math in ("\\(", "\\["):
                math = ""
            i += 2
            continue
        if char == "$":
            mark = "$$" if text[i : i + 2] == "$$" else "$"
            if mark == "$" and not math and _money_sign(text, i, end):
                i += 1  # `is $18. She ...`: a dollar sign, not maths
                continue
            math = "" if math == mark else (math or mark)
            i += len(mark)
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(0, depth - 1)
        elif not math and not depth and _ends_sentence(text, i):
            return i
        i += 1
    return end


def _money_sign(text: str, i: int, end: int) -> bool:
    """Whether the `$` at `i` is a dollar sign: a number follows it and no `$` closes it on its line."""
    if not text[i + 1 : i + 3].lstrip(" -").startswith(tuple("0123456789")):
        return False
    closing = text.find("$", i + 1, end)
    return closing < 0 or "\n" in text[i + 1 : closing]


def _ends_sentence(text: str, i: int) -> bool:
    char = text[i]
    if char == "\n":
        return True
    if char in ".!?":  # `3.5` is a number; `3. Next` and a final `3.` end the sentence
        following = text[i + 1 : i + 2]
        return following == "" or following.isspace() or (char != "." and not following.isalnum())
    return False


def _strip_answer(answer: str) -> str:
    answer = answer.replace('\\"', '"').strip().strip("*").strip().strip('"“”').strip()
    for opening, closing in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(opening) and answer.endswith(closing) and len(answer) >= len(opening) + 2:
            answer = answer[len(opening) : -len(closing)].strip()
            break
    return before_ruled_out(answer.rstrip(".").strip().strip("*").strip())


def before_ruled_out(answer: str) -> str:
    """`5, not 6` → `5`, `5 (not 6)` → `5`, `5 rather than 6` → `5`: an answer followed by a value it rules
    out is the answer alone. Kept whole when the cut would split braces, maths or parentheses."""
    found = _RULED_OUT_AFTER.search(answer)
    if found is None:
        return answer
    head = answer[: found.start()].rstrip()
    balanced = head.count("{") == head.count("}") and head.count("(") == head.count(")")
    return head if head and balanced and head.count("$") % 2 == 0 else answer


def _is_prose(answer: str) -> bool:
    """A sentence rather than an answer: `a direct consequence of ...`, `correct`, `the same as before`."""
    outside_math = re.sub(r"\$[^$]*\$|\\\(.*?\\\)", " M ", answer[:_MAX_ANSWER_CHARS])
    words = outside_math.split()
    if not words:
        return False
    first = words[0].strip(",.:;*").lower()
    if len(words) == 1:  # `A`, `a`, `Yes`, `in` can all be answers; `correct` and `below` cannot
        return first in _NOT_ANSWERS
    return first in _PROSE_STARTS or sum(word.isalpha() and len(word) > 1 for word in words) >= 4


def _from_sentence(sentence: str) -> str | None:
    """`The largest $n$ is 34` → `34`: the value after the last "is" / "=" of a sentence."""
    matches = list(_INNER_IS.finditer(sentence))
    if not matches:
        return None
    value = _strip_answer(sentence[matches[-1].end() :])
    return value if value and not _is_prose(value) else None


def _answer_after(text: str, position: int, sentences: bool = True) -> str | None:
    """The answer introduced by the "answer" ending at `position`, or None when what follows is no answer.

    After a bare "answer" (no "is", ":" or "="), only maths in delimiters or a value on its own line counts
    (`Answer $9$`, `**Final Answer**\\n18`), not `answer the question`. A sentence after "Answer:" gives the
    value after its last "is" (`Final Answer: The largest $n$ is 34.`); other prose gives nothing."""
    connector = _CONNECTOR.match(text, position, position + 40)
    if connector is None or (connector.end() == position and not text[position : position + 1].isspace()):
        return None  # "answered", "answers." and the like
    joined = connector.group(0)
    start = connector.end()
    start += len(text[start : start + 40]) - len(text[start : start + 40].lstrip())
    bare = not any(mark in joined for mark in (":", "=")) and not _VERB.search(joined)
    if (
        bare
        and "\n" not in joined
        and text[start : start + 2] not in _MATH_OPENERS
        and text[start : start + 1] != "$"
    ):
        return None
    answer = _strip_answer(text[start : _answer_end(text, start)])
    if not answer:
        return None
    if _is_prose(answer):
        return _from_sentence(answer) if ":" in joined and sentences else None
    return answer


def answer_spans(text: str, sentences: bool = True) -> list[tuple[int, str]]:
    """(position, answer) for the answers introduced by "answer" (`The answer is 42.`, `Answer: D`,
    `**Final Answer:** $9$`), the last first; prose after "answer" (`The answer is correct`) is skipped.
    Without `sentences`, a sentence after "Answer:" gives nothing either (after a box, the box is surer)."""
    found: list[tuple[int, str]] = []
    occurrences = list(_ANSWER_WORD.finditer(text))
    for match in reversed(occurrences[-_MAX_ANSWER_TRIES:]):
        answer = _answer_after(text, match.end(), sentences)
        if answer:
            found.append((match.start(), answer))
    return found


def answer_is(text: str) -> str | None:
    """The answer after the last "the answer is" / "Answer:" anywhere in the response, without surrounding
    `$`, `\\(...\\)`, `\\[...\\]` and final period; prose after "answer" is skipped."""
    spans = answer_spans(text)
    return spans[0][1] if spans else None


def gsm8k_answer(text: str) -> str | None:
    """The answer after the last `####` marker (GSM8K's format)."""
    matches = _GSM8K_ANSWER.findall(text)
    return before_ruled_out(matches[-1].strip()) if matches else None


def _whole_value(text: str, match: re.Match[str]) -> str:
    """The number `match` found, with the fraction or mixed number it ends: the `2` of `7 1/2`, `1/2` or
    `\\frac{15}{2}` is that whole value, never the denominator alone."""
    start, end = match.span()
    window = max(0, start - _VALUE_WINDOW)
    before = _FRACTION_BEFORE.search(text, window, start)
    if before:
        return text[before.start() : end]
    before = _FRAC_BEFORE.search(text, window, start)
    if before and text[end : end + 1] == "}":
        return text[before.start() : end + 1]
    return match.group(0)


def _kept_numbers(text: str) -> list[re.Match[str]]:
    """The numbers in `text` but those it rules out (the 6 of `5, not 6` and `5 rather than 6`)."""
    return [
        match
        for match in _NUMBER.finditer(text)
        if not _RULED_OUT_BEFORE.search(text[max(0, match.start() - _RULED_OUT_WINDOW) : match.start()])
    ]


def last_number(text: str) -> str | None:
    """The last decimal number in the text, thousands separators included ("1,234.5", `9{,}500`), but not
    one the text rules out (`5, not 6` is 5), nor one its sentence hedges (`maybe 42, or maybe 43`: None); a
    number that ends a fraction or a mixed number is that value (`7 1/2`, `1/2`, `\\frac{15}{2}`), never its
    denominator."""
    tail = text[-2000:]
    matches = _kept_numbers(tail)
    if not matches or _hedged(tail, matches[-1].start()):
        return None
    return _whole_value(tail, matches[-1])


def bare_answer(text: str) -> str | None:
    """A response that is only maths is its own answer: one delimited span (`$x = 11$`, `\\(\\frac{1}{3}\\)`,
    `$$\\text{odd}$$`) or a short line of maths with at most one word (`-5`, `28 percent`)."""
    stripped = text.strip()
    if not stripped or len(stripped) > 200 or "\n\n" in stripped:
        return None
    inner = _strip_answer(stripped)
    if inner != stripped.strip("*").strip().rstrip(".").strip() and not any(
        m in inner for m in ("$", "\\(", "\\[")
    ):
        return inner or None  # exactly one delimited span
    commands = _LATEX_COMMAND.sub(" ", _ENVIRONMENT.sub(" ", stripped))
    words = [w for w in re.split(r"[^a-zA-Z]+", commands) if len(w) > 2]
    maths = any(c.isdigit() or c in "\\^_=<>" for c in stripped)  # `nothing` alone is no answer
    if _NOT_STATED.search(commands) or _HEDGE.search(commands):
        return None  # `Suppose $x = 5$.`, `Maybe 12.`: a line of maths that states no result
    return inner or None if len(words) <= 1 and maths else None


def stated_answer(text: str) -> str | None:
    """`Thus $x \\le 2$ is our answer.` → `x \\le 2`, and a closing `Therefore, the probability is 2/3.` →
    `2/3`: the value of a concluding sentence near the end of a response that has no other answer."""
    tail = text[-_TAIL_CHARS:]
    matches = list(_IS_THE_ANSWER.finditer(tail))
    if matches:
        before = tail[: matches[-1].start()].rstrip()
        span = _last_math_or_number(before)
        if span:
            return span
    conclusions = list(_CONCLUSION.finditer(tail))
    if not conclusions:
        return None
    start = conclusions[-1].end()
    end = _answer_end(tail, start)
    if len(tail) - end > _MAX_AFTER_CONCLUSION or tail[end : end + 1] not in (".", "!"):
        return None  # a sentence cut off mid-way (a truncated response) states nothing
    sentence = " " + tail[start:end]
    value = _from_sentence(sentence)
    if not value or not _VALUE_START.match(value):
        return None
    found = sentence.rfind(value)  # `So we get x = 5 and y = 6.` lists two values; `maybe` hedges
    return None if found < 0 or _unstated(sentence, found) else value


def _last_math_or_number(text: str) -> str | None:
    """The math span or number that `text` ends with (`... so $x \\le 2$`, `... thus 42`)."""
    for closing, opening in (("$", "$"), ("\\)", "\\("), ("\\]", "\\[")):
        if text.endswith(closing):
            start = text.rfind(opening, 0, len(text) - len(closing))
            if start >= 0:
                return text[start + len(opening) : len(text) - len(closing)].strip() or None
    number = _TRAILING_NUMBER.search(text[-60:])
    return number.group(0) if number else None


def closing_math(text: str) -> str | None:
    """A last resort beside `closing_number`: the maths a response closes with, when its last sentence ends
    on it and either ends (`We find that $x \\lt 3$.`) or introduces it (`The solution is $x != 5$`,
    `Here is the matrix: $...$`). A span that merely stops the text (`Let us substitute $x=5$`, perhaps cut
    off) or that a hedge introduces (`It might be $5$.`) states nothing."""
    tail = text[-_TAIL_CHARS:].rstrip().rstrip("*").rstrip()
    ended = tail.endswith(".")
    tail = tail.rstrip(".").rstrip()
    for opening, closing in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if not tail.endswith(closing) or tail.endswith("\\" + closing):
            continue
        start = tail.rfind(opening, 0, len(tail) - len(closing))
        if start < 0 or (opening == "$" and (tail[start - 1 : start] in ("\\", "$"))):
            return None
        value = tail[start + len(opening) : len(tail) - len(closing)].strip()
        line = tail[tail.rfind("\n", 0, start) + 1 : start].rstrip()
        introduced = line.endswith(":") or _INTRODUCES.search(line[-12:]) is not None
        if not value or "\n\n" in value or not (ended or introduced) or _unstated(tail, start):
            return None
        return value
    return None


def closing_number(text: str, max_after: int = 40) -> str | None:
    """The last resort, as math-verify takes the last number: the number a response closes with, when
    nothing else states an answer (`... so she makes 9*2=$18 every day.` → `18`). Only the last line counts;
    what follows the number must be a few words without digits (a unit, `every day.`) and end the sentence
    (`.`, `!`), or be a unit or currency glued on (`1,000.99€`); the sentence must state it (`_unstated`). A
    number deep in a closing paragraph, in an exponent or a time (`m^2`, `4:30`), or in a truncated response
    states nothing."""
    lines = [line for line in text[-_TAIL_CHARS:].splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[-1]
    matches = [
        m for m in _kept_numbers(line) if not _EXPONENT_BEFORE.search(line[max(0, m.start() - 2) : m.start()])
    ]
    if not matches or line[matches[-1].start() - 1 : matches[-1].start()] == ":":
        return None  # `So x is 5, not 6.` keeps 5 and fails below; `4:30` is a time, not 30
    after = line[matches[-1].end() :]
    bare = _POWER.sub("", after)  # `25 m^2.`: a unit's power is no number after the answer
    if len(after) > max_after or any(c in _DIGITS for c in bare) or _unstated(line, matches[-1].start()):
        return None
    if _ENDING_UNIT.fullmatch(after):
        return _whole_value(line, matches[-1])  # `1,000.99€`, `12 m²`: whole, with or without a period
    glued = after[:1].isalpha()  # `5x.`, `5π.`: algebra, not a number and its unit
    if glued or _QUALIFIED.search(bare) or not after.strip().rstrip("*$").strip().endswith((".", "!")):
        return None  # `... and 12 of them` may be cut off; `5 pi`, `3 million`, `5 less than y` are more
    return _whole_value(line, matches[-1])


def _sentence_before(text: str, start: int) -> tuple[str, str]:
    """The sentence before a value at `start`, and its lead: the sentence without a trailing `$x = `."""
    window = text[max(0, start - _HEDGE_WINDOW) : start]
    cut = max(window.rfind(". "), window.rfind("\n"), window.rfind("! "), window.rfind("? "))
    sentence = window[cut + 1 :]
    return sentence, sentence[: _NAMED_BEFORE.search(sentence).start()].rstrip()


def _hedged(text: str, start: int) -> bool:
    """Whether the sentence before the value at `start` hedges (`Maybe 41, maybe 42, or maybe 43.`, `It
    could be 7 or 8.`, `$x = 4$ or $x = 5$`): a guess among values states none of them."""
    return _HEDGE.search(_sentence_before(text, start)[1]) is not None


def _unstated(text: str, start: int) -> bool:
    """Whether the sentence before a closing value at `start` fails to state it as the result, so that no
    fallback credits the value: a hedge (`_hedged`), the last of a list (`The roots are 5 and 6.`, `$x=5$,
    $y=6$`), an assumption, a case or a negation (`Suppose $x = 5$.`, `The result is never 12.`), or a bound
    (`greater than 5`, `from 3 to 12`)."""
    sentence, lead = _sentence_before(text, start)
    if _HEDGE.search(lead) or _DENIED.search(lead) or _COMPARED.search(lead):
        return True
    if _NOT_STATED.search(sentence) and not lead.endswith(":"):  # `When multiplying by I: $I$` states it
        return True
    return lead.endswith((",", " and", "&"))


def final_answer(text: str) -> str | None:
    """The strict math extraction: the last box, or an "answer is X" after it, else `#### X`, else a response
    that is only maths. Raises UnbalancedBraces when the last box never closes."""
    span = last_box_span(text)
    spans = answer_spans(text[span[2] :], sentences=False) if span else answer_spans(text)
    if spans:
        return spans[0][1]
    if span is not None:
        return span[0]
    if _box_before(text, len(text))[0] >= 0:  # only empty boxes: no answer in them, and no bare maths
        return gsm8k_answer(text) or stated_answer(text)
    return gsm8k_answer(text) or bare_answer(text) or stated_answer(text)
