"""False positives (a wrong answer scored +1, the worst error for RL), each closed as a kind, with the
neighbouring forms that must still verify (docs/verifiers.md, "Reasoning models: the final answer only" and
"Mixed numbers are their value")."""

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
