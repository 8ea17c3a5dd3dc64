"""The recipe's sources on real rows of ../shared/data: every adapter, the tricky formats (several unknowns,
units in parentheses, options inside the instruction, index vs letter, full-width digits, segmented Chinese),
multiple choice to open-ended on the reasoning sets, dedupe across sources on the known overlaps, and
decontamination against every evaluation set."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from rlvr.config import load_recipe
from rlvr.data import dedup
from rlvr.data.build import (
    DataBuildConfig,
    EvalSetConfig,
    SourceConfig,
    _first_occurrences,
    eval_texts,
    read_source,
    record_adapter,
)
from rlvr.data.fields import MULTI_ANSWER_HINT, halfwidth, number_answer
from rlvr.data.filters import filter_verifiable, to_open_ended
from rlvr.data.schema import file_records
from verifiers import get_verifier

REPO = Path(__file__).resolve().parents[1]


@cache
def recipe_sources() -> dict[str, SourceConfig]:
    config = load_recipe(REPO / "recipes/data.yaml", schema=DataBuildConfig)
    return {s.name: s for s in config.sources}


@cache
def records(name: str) -> list[dict[str, Any]]:
    """The raw records of a recipe source, as published."""
    source = recipe_sources()[name]
    paths = [source.path] if isinstance(source.path, str) else source.path
    return [r for p in paths for _, r in file_records(REPO / p)]


def row(name: str, index: int, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record `index` of a source through its recipe adapter, the open-ended conversion and the filter."""
    adapt = record_adapter(recipe_sources()[name])
    return filter_verifiable(to_open_ended(adapt(record or records(name)[index], index)))


def meta(candidate: dict[str, Any]) -> dict[str, Any]:
    return json.loads(candidate["meta"])


def accepts(gold: str, response: str, verifier: str = "math") -> bool:
    return get_verifier(verifier).verify(f"The answer is \\boxed{{{response}}}.", gold).correct


def test_every_recipe_source_reads_its_first_rows_with_its_license() -> None:
    for name, source in recipe_sources().items():
        for index in range(3):
            candidate = record_adapter(source)(records(name)[index], index)
            assert not candidate["drop"].startswith("malformed"), (name, index, candidate["drop"])
            assert candidate["prompt"] and meta(candidate)["license"] == source.license


def test_chinese_word_problem_numbers_become_golds_the_verifier_checks() -> None:
    mixed = row("math23k", 203)  # answer `7((2)/(3))`, equation 3-2/6+5
    assert records("math23k")[203]["answer"] == "7((2)/(3))" and mixed["answer"] == "23/3"
    assert accepts(mixed["answer"], "\\frac{23}{3}") and not accepts(mixed["answer"], "7")
    assert row("math23k", 31)["answer"] == "4/7"  # `((4)/(7))`
    assert row("math23k", 6)["answer"] == "10%" and accepts("10%", "10\\%")
    fraction = row("ape210k", 1)  # `(11/20)`
    assert fraction["answer"] == "11/20" and accepts("11/20", "0.55") and not fraction["drop"]
    formula = row("ape210k", 168)  # "正确的算式是多少": the gold is the formula `(3/10)/(14/15)`
    assert formula["drop"] == "answer_not_a_number"


def test_full_width_digits_and_punctuation_are_folded_in_golds() -> None:
    assert halfwidth("５０％，（１／３）") == "50%,(1/3)"
    assert number_answer("１２．５％") == "12.5%" and number_answer("（１１／２０）") == "11/20"
    record = {**records("math23k")[1], "answer": "１４６６"}  # a real row with its gold in full-width digits
    assert row("math23k", 1, record)["answer"] == "1466"


def test_several_unknowns_become_a_set_gold_with_a_hint_in_the_prompt() -> None:
    alg = row("alg514", 0)  # novelists and poets in a ratio of 5 to 3, 24 people: [15.0, 9.0]
    assert records("alg514")[0]["lSolutions"] == [15.0, 9.0]
    assert alg["answer"] == "15, 9" and meta(alg)["answers"] == 2 and not alg["drop"]
    assert alg["prompt"].endswith(MULTI_ANSWER_HINT["en"])
    assert accepts("15, 9", "9, 15") and accepts("15, 9", "15, 9")  # a set: any order
    assert not accepts("15, 9", "15") and not accepts("15, 9", "15, 9, 3") and not accepts("15, 9", "15, 8")
    hmwp = row("hmwp", 2)  # [200, 400]; word-segmented Chinese
    assert hmwp["answer"] == "200, 400" and hmwp["prompt"].endswith(MULTI_ANSWER_HINT["zh"])
    assert hmwp["prompt"].startswith("某工厂承接了 1 批纸箱加工任务，用长方形和正方形纸板")  # CJK unspaced
    assert row("hmwp", 0)["answer"] == "5" and "answers" not in meta(row("hmwp", 0))
    assert row("hmwp", 179)["drop"] == "no_answer"  # `ans: []`


def test_units_in_parentheses_several_answers_and_body_plus_question() -> None:
    first = row("asdiv", 0)
    assert records("asdiv")[0]["Answer"] == "9 (apples)" and first["answer"] == "9"
    assert (
        first["prompt"]
        == "Seven red apples and two green apples are in the basket.\nHow many apples are in the basket?"
    )
    ages = row("asdiv", 1294)  # `5 (years old); 15 (years old); 20 (years old)`
    assert ages["answer"] == "5, 15, 20" and meta(ages)["answers"] == 3
    assert row("asdiv", 29)["drop"] == "answer_not_a_number"  # `Mrs. Hilt`
    assert row("svamp", 0)["answer"] == "51" and row("svamp", 0)["prompt"].count("\n") == 1
    thirds = row("mawps", 12)  # 10.333333333333334
    assert thirds["answer"] == "31/3" and accepts("31/3", "10\\frac{1}{3}")  # a mixed number is its value
    assert accepts("31/3", "\\frac{31}{3}") and not accepts("31/3", "10 \\cdot \\frac{1}{3}")
    assert row("mathqa", 0)["answer"] == "400"  # `Output Answer: ["400"]`
    aime = row("aime", 0)
    assert aime["answer"] == "60" and "solution" in meta(aime)


def test_options_inside_the_instruction_text() -> None:
    mathqa = row("mathqa_mc", 0)  # `... ? The options: A ) 38 , B ) 27.675 , ... , D ) DAtA inADEquAtE , ...`
    assert mathqa["prompt"].endswith("if no discount had been offered ?")
    assert mathqa["choices"] == ["38", "27.675", "30", "data inadequate", "none of these"]
    assert mathqa["answer"] == "38" and not mathqa["drop"]  # a distractor that refers to the others is fine
    listed = row("mathqa_mc", 82)  # options as the Python text of a list: ['A ) 2 : 3', ...]
    assert listed["choices"][2] == "16:9" and listed["letter"] == "C"
    brakes = row("arc", 4761)  # `Answer1: gravity Answer2: friction ...`, answer `answer2`
    assert brakes["choices"] == ["gravity", "friction", "magnetic", "push"] and brakes["letter"] == "B"
    assert brakes["answer"] == "friction" and brakes["verifier"] == "exact" and not brakes["drop"]
    assert brakes["prompt"] == "What kind of force do brakes use to stop a moving bicycle?"
    assert row("arc", 0)["drop"] == "mc_option_dependent_stem"  # `Which skin surface will ...`
    assert row("arc", 6918)["drop"] == "mc_option_not_an_answer"  # `The sun is responsible for` + a sentence


def test_correct_option_as_index_lowercase_letter_or_answerN() -> None:
    logiqa2 = row("logiqa2", 0)  # answer 3, counted from 0
    assert records("logiqa2")[0]["answer"] == 3 and logiqa2["letter"] == "D"
    assert logiqa2["choices"][3] == records("logiqa2")[0]["options"][3]
    zh = row("logiqa", 1302)  # answer `a`, options labelled `A.` with Chinese text
    assert zh["letter"] == "A" and zh["choices"][0].startswith("塞内加尔人")
    assert zh["drop"] == "mc_option_dependent_stem"  # `...以下哪项...`
    lsat = row("logic_llm", 0)  # `A) Klosnik, Poirier, ...`, answer `B`
    assert lsat["letter"] == "B" and lsat["choices"][1].startswith("Klosnik, Londi")


def test_tal_option_objects_in_english_and_chinese() -> None:
    en = row("tal", 0)  # [[{aoVal: A, content: "$$0$$ "}], ...], answer_value A
    assert en["choices"] == ["0", "1", "2", "5", "8"] and en["answer"] == "0" and not en["drop"]
    assert "$5A2A$" in en["prompt"] and "$$" not in en["prompt"]
    zh = row("tal", 5000)  # 小数乘法：$$0.025\times 0.04$$的结果的小数位数有位．
    assert zh["answer"] == "3" and zh["prompt"].startswith("1. 小数乘法")
    assert row("tal", 1)["drop"] == "mc_stem_completed_by_option"  # `the sum will always be` + `odd`


def converted_reasons(name: str) -> Counter[str]:
    ds = read_source(recipe_sources()[name], num_proc=1)
    return Counter(filter_verifiable(to_open_ended(r))["drop"] for r in ds.to_list())


@pytest.mark.parametrize(
    ("name", "most_kept"),
    [("logiqa", 0.03), ("logiqa2", 0.02), ("logic_llm", 0.01), ("arc", 0.15)],
)
def test_reasoning_sets_keep_only_stems_that_stand_alone(name: str, most_kept: float) -> None:
    """Most LogiQA, Logic-LLM and ARC options are sentences that only make sense as options: a high drop
    rate, each with its reason, is the intended result."""
    reasons = converted_reasons(name)
    total = sum(reasons.values())
    assert total == len(records(name))
    assert 0 < reasons[""] <= most_kept * total, reasons
    stands_alone = ("mc_option_dependent_stem", "mc_option_not_an_answer", "mc_stem_completed_by_option")
    assert sum(reasons[r] for r in stands_alone) > 0.8 * total
    assert not any(r.startswith("malformed") for r in reasons)


def adapted_prompts(name: str) -> list[str]:
    adapt = record_adapter(recipe_sources()[name])
    return [adapt(r, i)["prompt"] for i, r in enumerate(records(name))]


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("math23k", "ape210k", 866),
        ("mathqa", "mathqa_mc", 391),
        ("asdiv", "mawps", 243),
        ("logiqa", "logiqa2", 246),
    ],
)
def test_dedupe_finds_the_known_overlaps_between_sources(first: str, second: str, overlap: int) -> None:
    """The overlaps the data README lists (exact text), found by the builder's exact and near dedupe on the
    adapted prompts (the second source's copies go; the near pass catches copies whose punctuation or
    number format differs)."""
    a, b = adapted_prompts(first), adapted_prompts(second)
    keys = {dedup.text_hash(p) for p in a}
    exact = sum(dedup.text_hash(p) in keys for p in b)
    unique_b = [p for p in b if dedup.text_hash(p) not in keys]
    near = dedup.near_duplicates(a + unique_b, 0.8)
    near_b = sum(1 for i, j in near.items() if i >= len(a) and j < len(a))
    assert exact >= overlap * 0.9 and exact + near_b >= overlap, (exact, near_b)
    _, copies = _first_occurrences(a + b)  # the builder's exact stage keeps the first source's row
    assert sum(1 for i, j in copies.items() if i >= len(a) > j) == exact


def test_qwen_eval_sets_name_their_text_differently_per_file(shared_data: Path) -> None:
    path = str(shared_data / "qwen25math_evalsets.jsonl.gz")
    texts, missing = eval_texts(EvalSetConfig(path=path, field=["question", "problem", "content"]))
    assert len(texts) == 5946 and missing == 0
    only_question = eval_texts(EvalSetConfig(path=path, field="question"))
    assert only_question[1] == 976 + 272  # carp_en (content) and minerva_math (problem) counted, not lost


def test_chinese_spans_are_twice_as_long_and_boilerplate_is_not_contamination(shared_data: Path) -> None:
    assert len(next(iter(dedup.spans("甲乙两车分别从A、B两地同时相向而行，" * 3, 13))).split()) == 26
    evals = [r for _, r in file_records(shared_data / "qwen25math_evalsets.jsonl.gz")]
    cmath = next(
        r["question"] for r in evals if "cmath" in r["_src_file"] and "两地同时相向" in r["question"]
    )
    gate = dedup.Contamination([cmath])
    assert gate.hit(cmath) and gate.hit("小明问：" + cmath)  # copied, or copied into a longer prompt
    # a real Math23K problem that shares a templated phrase with it, not the problem
    math23k = next(
        r["question"] for r in records("math23k") if r["question"].startswith("甲乙两车分别从A、B两地")
    )
    assert "分别从A、B两地同时相向而行" in cmath and not gate.hit(math23k)
    # AIME's `where m and n are relatively prime positive integers. Find m+n` is in Qwen's gaokao2023en set:
    # one shared 13-gram would drop dozens of AIME problems that are not in it
    gaokao = [r["question"] for r in evals if "gaokao2023en" in r["_src_file"]]
    strict, default = dedup.Contamination(gaokao, min_overlap=1e-9), dedup.Contamination(gaokao)
    aime = [r["problem"] for r in records("aime")]
    assert sum(map(strict.hit, aime)) > 50 and sum(map(default.hit, aime)) <= 2


def test_a_math_solution_ending_on_several_boxes_answers_with_all_of_them() -> None:
    """MATH's `answer` field keeps only the last box of `t = \\boxed{a}$ or $t = \\boxed{b}`; the verifier
    reads two boxes joined by "or" as a hedge against one value, so the gold takes them all."""
    from rlvr.data.sources import math

    solution = "Hence $t = \\boxed{\\frac{1}{3}}$ or $t = \\boxed{-\\frac{5}{2}}$."
    row = math({"problem": "p", "solution": solution, "answer": "-\\frac{5}{2}"})
    assert row["answer"] == "\\frac{1}{3}, -\\frac{5}{2}"
    assert math({"problem": "p", "solution": "So $\\boxed{5}$.", "answer": "5"})["answer"] == "5"
    twice = math({"problem": "p", "solution": "\\boxed{5}, \\boxed{5}", "answer": "5"})
    assert twice["answer"] == "5"
    from verifiers import get_verifier

    assert get_verifier("math").verify(solution, row["answer"]).correct  # the reference solution scores
