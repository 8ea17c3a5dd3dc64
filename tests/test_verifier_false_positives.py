"""False positives (a wrong answer scored +1, the worst error for RL), each closed as a kind, with the
neighbouring forms that must still verify (docs/verifiers.md, "Reasoning models: the final answer only",
"Mixed numbers are their value" and "Money and a sentence's punctuation")."""

from __future__ import annotations

import pytest

from verifiers import get_verifier
from verifiers.extract import final_section

pytestmark = pytest.mark.usefixtures("generous_verifier_limits")  # correctness, not speed

TEXT_VERIFIERS = ("math", "numeric", "exact")


def status(name: str, response: str, gold: str) -> str:
    return get_verifier(name).verify(response, gold).status


# Kind 1: a draft answer inside <think> never wins over the final one.
DRAFT_FIRST = "<think>First guess \\boxed{41}; recheck: 2+40=42.</think>\n<answer>42</answer>"
FINAL_SECTIONS = [
    (DRAFT_FIRST, "42"),
    ("<think>so 41</think>The answer is 42.", "The answer is 42."),
    ("<THINK>41</THINK >\n< ANSWER >42</ answer >", "42"),
    ("<think>41</think><answer>40</answer> no, <answer>42</answer>", "42"),
    ("<think>Answer: <answer>41</answer></think>\n<answer>42</answer>", "42"),
    ("<think>41</think>\n<answer>\n42\n", "\n42\n"),  # `</answer>` cut off as a stop string
    ("Reasoning first.\n<answer>42</answer>\nHope it helps: \\boxed{41}", "42"),
    ("prefilled <think> in the prompt, so only</think> 42", " 42"),
    ("<think>a</think> b <think>c", None),
    ("<think>\\boxed{42}", None),
    ("<think>x</think><answer></answer>", ""),
    ("no tags at all: $x < 3$ and \\boxed{2}", "no tags at all: $x < 3$ and \\boxed{2}"),
]


@pytest.mark.parametrize(("response", "section"), FINAL_SECTIONS)
def test_final_section(response: str, section: str | None) -> None:
    assert final_section(response) == section


@pytest.mark.parametrize("name", ("math", "numeric"))
@pytest.mark.parametrize(
    "response",
    [
        DRAFT_FIRST,
        "<think>\nThe answer is \\boxed{41}.\nWait, 2+40=42.\n</think>\n\nSo the total is \\boxed{42}.",
        "<think>#### 41</think>\n#### 42",
        "<think>Answer: 41</think>\nThe answer is 42.",
        "<think>41 it is</think>\nSo she has 42 apples left.",
        "<THINK>\\boxed{41}</Think>\n<Answer> 42 </Answer>",
        "<think><answer>41</answer></think><answer>42</answer>",
        "<reasoning>\\boxed{41}</reasoning>\n<answer>\n42\n</answer>",
    ],
)
def test_a_draft_in_the_thinking_never_scores(name: str, response: str) -> None:
    assert status(name, response, "41") == "wrong"
    assert status(name, response, "42") == "ok"


@pytest.mark.parametrize("name", TEXT_VERIFIERS)
def test_a_response_cut_off_while_thinking_has_no_answer(name: str) -> None:
    for response in ("<think>It is \\boxed{42}", "<think>#### 42", "<think>x</think><think>\\boxed{42}"):
        result = get_verifier(name).verify(response, "42")
        assert result.status == "no_answer" and result.reward == -1.0


@pytest.mark.parametrize("name", ("math", "numeric"))
@pytest.mark.parametrize(
    "response",
    [
        "<answer>42</answer>",
        "<answer>\\boxed{42}</answer>",
        "<answer> $42$ </answer>",
        "<think>\n2+40\n</think>\n<answer>\n42\n</answer>",
        "<think>2+40</think>\nThus the answer is $\\boxed{42}$.",
        "<think>I think 42</think>\n<answer>40</answer>\n<answer>42</answer>",
        "<think>2+40</think>\n<answer>42",
    ],
)
def test_the_final_answer_is_read(name: str, response: str) -> None:
    assert status(name, response, "42") == "ok"
    assert status(name, response, "41") == "wrong"


def test_the_right_answer_in_the_thinking_and_a_wrong_final_one_is_wrong() -> None:
    response = "<think>2+40 = \\boxed{42}, I am sure.</think>\n<answer>41</answer>"
    for name in TEXT_VERIFIERS:
        assert status(name, response, "42") == "wrong"
    assert status("choice", "<think>The answer is B.</think>\nAnswer: C", "B") == "wrong"
    assert status("choice", "<think>The answer is B.</think>\n<answer>B</answer>", "B") == "ok"


def test_exact_reads_the_answer_block() -> None:
    assert status("exact", "<think>Lyon?</think>\n<answer>Paris</answer>", "Paris") == "ok"
    assert status("exact", "<think>Paris?</think>\n<answer>Lyon</answer>", "Paris") == "wrong"


# Kind 2: a mixed number is its value, never a product (2·½) or a concatenation (1 1/4 → 11/4).
MIXED_VALUES = [
    ("2\\frac{1}{2}", "2.5"),
    ("2\\frac{1}{2}", "\\frac52"),
    ("1 1/4", "\\frac{5}{4}"),
    ("7 1/2", "7.5"),
    ("-2\\frac{1}{2}", "-2.5"),
    ("-7 1/2", "-\\frac{15}{2}"),
    ("3\\tfrac{1}{4}", "13/4"),
    ("3\\dfrac14", "3.25"),
    ("3\\frac14", "\\frac{13}{4}"),
    ("12\\frac{3}{4}", "12.75"),
    ("2\\,\\frac{1}{2}", "2.5"),
    ("2 \\frac{1}{2}", "2.5"),
    ("x = 2\\frac{1}{2}", "2.5"),
    ("2\\frac{1}{2} \\text{ cups}", "2.5"),
    ("\\frac{5}{2}", "2\\frac{1}{2}"),  # the gold is a mixed number
    ("2.5", "2 1/2"),
    ("1\\frac{1}{2}, 2\\frac{1}{4}", "1.5, 2.25"),
]
MIXED_NEAR_MISSES = [
    ("2\\frac{1}{2}", "1"),  # not 2·½
    ("1 1/4", "\\frac{11}{4}"),  # not 11/4
    ("7 1/2", "71/2"),
    ("7 1/2", "\\frac{7}{2}"),
    ("-2\\frac{1}{2}", "-1"),
    ("3\\tfrac{1}{4}", "\\frac34"),
    ("3\\dfrac14", "0.75"),
    ("12\\frac{1}{2}", "6"),
    ("1", "2\\frac{1}{2}"),  # a mixed gold is its value too
    ("2 3/2", "23/2"),  # digits a space apart never join (but thousands: `1 000`)
    ("1 2", "12"),
]
PRODUCTS = [
    ("2\\pi", "2\\pi", True),
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("x\\frac{1}{2}", "\\frac{x}{2}", True),
    ("2 \\cdot \\frac12", "1", True),
    ("2\\times\\frac{1}{2}", "1", True),
    ("2 \\cdot \\frac12", "2.5", False),
    ("2\\frac{3}{2}", "3", True),  # an improper fraction: no mixed number, a product
    ("2\\frac{1}{2}\\pi", "\\pi", True),
    ("\\frac{1}{2}x", "\\frac{x}{2}", True),
    ("1 000", "1000", True),
]


@pytest.mark.parametrize(("answer", "gold"), MIXED_VALUES)
def test_a_mixed_number_is_its_value(answer: str, gold: str) -> None:
    assert status("math", f"So the answer is $\\boxed{{{answer}}}$.", gold) == "ok"


@pytest.mark.parametrize(("answer", "gold"), MIXED_NEAR_MISSES)
def test_a_mixed_number_is_no_product_or_concatenation(answer: str, gold: str) -> None:
    assert status("math", f"So the answer is $\\boxed{{{answer}}}$.", gold) == "wrong"


@pytest.mark.parametrize(("answer", "gold", "same"), PRODUCTS)
def test_products_stay_products(answer: str, gold: str, same: bool) -> None:
    assert (status("math", f"$\\boxed{{{answer}}}$", gold) == "ok") is same


@pytest.mark.parametrize(
    ("response", "gold", "verdict"),
    [
        ("#### 7 1/2", "7.5", "ok"),
        ("#### 7 1/2", "71/2", "wrong"),
        ("#### 7 1/2", "3.5", "wrong"),
        ("#### -2 1/2", "-2.5", "ok"),
        ("#### 7.5", "7 1/2", "ok"),  # a mixed gold
        ("#### 7.5", "#### 7 1/2", "ok"),
        ("\\boxed{2\\frac{1}{2}}", "2.5", "ok"),
        ("\\boxed{2\\frac{1}{2}}", "1", "wrong"),
        ("\\boxed{1 1/4}", "2.75", "wrong"),
        ("She ate 7 1/2 pies.", "7.5", "ok"),
        ("She ate 7 1/2 pies.", "2", "wrong"),  # the last number is the mixed number, not its denominator
        ("She ate 1/2 of the pie.", "2", "wrong"),
        ("She ate $\\frac{15}{2}$ pies.", "2", "wrong"),
        ("She ate $\\frac{15}{2}$ pies.", "7.5", "ok"),
        ("It was due on 3/4/2020", "2020", "ok"),  # a date is no fraction
    ],
)
def test_numeric_reads_mixed_numbers(response: str, gold: str, verdict: str) -> None:
    assert status("numeric", response, gold) == verdict


@pytest.mark.parametrize(
    ("response", "gold", "verdict"),
    [
        ("So she ate 7 1/2 pies.", "7.5", "ok"),
        ("So she ate 7 1/2 pies.", "2", "wrong"),
        ("She gets $\\frac{1}{2}$ of the pie.", "2", "wrong"),
        ("#### 7 1/2", "\\frac{15}{2}", "ok"),
        ("#### 1 1/4", "\\frac{11}{4}", "wrong"),
    ],
)
def test_math_reads_a_closing_mixed_number_whole(response: str, gold: str, verdict: str) -> None:
    assert status("math", response, gold) == verdict


def test_the_dataset_builder_shares_the_reading() -> None:
    from rlvr.data.fields import number_answer
    from verifiers.normalize import mixed_value, normalize_answer

    assert number_answer("7 1/2") == "15/2" and number_answer("-2 1/2") == "-5/2"
    assert number_answer("2((1)/(3))") == "7/3" and number_answer("-2((1)/(2))") == "-5/2"
    assert mixed_value("-0", "1", "2") == -mixed_value("0", "1", "2")
    assert normalize_answer("-2\\frac12") == "-\\frac{5}{2}" and normalize_answer("7 1/2") == "\\frac{15}{2}"


# Kind 4: money signs and a sentence's punctuation are no part of the value; a value ruled out is no answer.
MONEY_FORMS = [  # (response, gold): numeric and math both read the value
    ("\\boxed{\\$18}", "18"),
    ("$\\boxed{\\$18}$", "18"),
    ("\\boxed{\\$ 18}", "18"),
    ("\\boxed{\\$\\,18}", "18"),
    ("\\boxed{18\\$}", "18"),
    ("\\boxed{-\\$18}", "-18"),
    ("\\boxed{\\$-18}", "-18"),
    ("\\boxed{€18}", "18"),
    ("\\boxed{18 €}", "18"),
    ("\\boxed{£18}", "18"),
    ("\\boxed{¥18}", "18"),
    ("\\boxed{\\pounds 18}", "18"),
    ("\\boxed{\\textdollar 18}", "18"),
    ("\\boxed{USD 18}", "18"),
    ("\\boxed{18 USD}", "18"),
    ("\\boxed{\\$18.00}", "18"),
    ("\\boxed{\\$9{,}500}", "9500"),
    ("\\boxed{9{,}500}", "9500"),
    ("\\boxed{\\$9,\\!500}", "9500"),
    ("\\boxed{\\$1,800.50}", "1800.5"),
    ("\\boxed{$1,000$}", "1000"),
    ("\\boxed{\\$18 \\text{ per hour}}", "18"),
    ("#### \\$72", "72"),
    ("#### $72", "72"),
    ("#### 72$", "72"),
    ("#### €72", "72"),
    ("#### 72,", "72"),
    ("#### 72.", "72"),
    ("#### 72;", "72"),
    ("#### \\$1,000,", "1000"),
    ("\\boxed{72,}", "72"),
    ("\\boxed{72;}", "72"),
    ("The answer is \\$18.", "18"),
    ("The answer is $18.", "18"),
    ("The answer is $18. She saves all of it.", "18"),
    ("She pays \\$9{,}500 in total.", "9500"),
    ("The answer is 5, not 6.", "5"),
    ("The answer is 5 (not 6).", "5"),
    ("The answer is 5, but not 6.", "5"),
    ("The answer is 5 rather than 6.", "5"),
    ("#### 5, not 6", "5"),
    ("\\boxed{18}", "\\$18"),  # golds too
    ("\\boxed{18}", "$18"),
    ("\\boxed{18}", "€18"),
    ("#### 18", "\\$ 18"),
    ("\\boxed{9500}", "\\$9{,}500"),
    ("\\boxed{72}", "72,"),
]
MONEY_NEAR_MISSES = [  # (response, gold): neither scores
    ("\\boxed{\\$18}", "17"),
    ("\\boxed{\\$18}", "-18"),
    ("\\boxed{-\\$18}", "18"),
    ("\\boxed{\\$18.50}", "18"),
    ("\\boxed{\\$1,800}", "18"),
    ("\\boxed{\\$9{,}500}", "500"),
    ("\\boxed{\\$9{,}500}", "9"),
    ("She pays \\$9{,}500 in total.", "500"),
    ("She pays 9\\,500 dollars.", "500"),
    ("\\boxed{18, 19}", "18"),
    ("\\boxed{18, 19}", "19"),
    ("\\boxed{\\$18, \\$19}", "18"),
    ("\\boxed{1,2}", "12"),
    ("\\boxed{1, 200}", "1200"),
    ("#### 72, 73", "72"),
    ("#### 72, 73", "73"),
    ("#### 7,2", "72"),
    ("#### 72!", "72"),  # a factorial, not an exclamation
    ("The answer is 5, not 6.", "6"),
    ("The answer is 5 (not 6).", "6"),
    ("The answer is 5 rather than 6.", "6"),
    ("#### 5, not 6", "6"),
    ("So it is 5, not 6.", "6"),
    ("It is not 6.", "6"),
    ("\\boxed{17}", "\\$18"),
    ("\\boxed{18}", "\\$18, \\$19"),
]


@pytest.mark.parametrize("name", ("numeric", "math"))
@pytest.mark.parametrize(("response", "gold"), MONEY_FORMS)
def test_money_and_punctuation_read_the_value(name: str, response: str, gold: str) -> None:
    assert status(name, response, gold) == "ok"


@pytest.mark.parametrize("name", ("numeric", "math"))
@pytest.mark.parametrize(("response", "gold"), MONEY_NEAR_MISSES)
def test_money_near_misses_never_score(name: str, response: str, gold: str) -> None:
    assert status(name, response, gold) != "ok"


def test_money_pieces() -> None:
    from verifiers.extract import before_ruled_out, last_number
    from verifiers.normalize import normalize_answer, strip_delimiters

    assert normalize_answer("\\$9{,}500") == "9500" and normalize_answer("18\\$") == "18"
    assert normalize_answer("\\euro 18") == "18" and normalize_answer("-USD 18") == "-18"
    assert normalize_answer("USD") == "USD" and normalize_answer("\\pounds{}18") == "18"
    assert strip_delimiters("18\\$") == "18\\$" and strip_delimiters("$18\\$$") == "18\\$"
    assert strip_delimiters("$72,$") == "72" and strip_delimiters("72;") == "72"
    assert strip_delimiters("1, 2, 3, ...") == "1, 2, 3," and strip_delimiters("18\\,") == "18\\,"
    assert last_number("She pays \\$9{,}500 and 2,000,000.") == "2,000,000"
    assert last_number("It costs 9{,}500.") == "9{,}500" and last_number("9\\,500 m") == "9\\,500"
    assert last_number("5, not 6") == "5" and last_number("not 6") is None
    assert last_number("she cannot 6") == "6" and last_number("5 instead of \\$6") == "5"
    assert before_ruled_out("5, not 6") == "5" and before_ruled_out("5 (not 6)") == "5"
    assert before_ruled_out("f(x, not y)") == "f(x, not y)"  # the cut would split the parentheses
    assert before_ruled_out("\\text{5, not 6}") == "\\text{5, not 6}"
    assert before_ruled_out("x \\not= 5") == "x \\not= 5"
    assert status("exact", "#### \\$72,", "72") == "ok" and status("exact", "\\boxed{€18}", "18") == "ok"
