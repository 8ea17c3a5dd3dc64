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
