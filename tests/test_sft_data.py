"""`rlvr data sft`: the SFT set built from the real files of ../shared/data (small limits: seconds). Worked
solutions come to the gold, bad equations and malformed lines are counted, evaluation problems stay out,
conversations alternate and end with the assistant, and every problem's user turn is the RL prompt."""

from __future__ import annotations

import ast
import gzip
import json
import operator
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from rlvr.cli import main
from rlvr.config import PromptConfig, RecipeError, load_recipe, validate_recipe
from rlvr.data.build import DataBuildConfig, record_adapter
from rlvr.data.schema import PromptRow, write_prompt_file
from rlvr.data.sft_set import INSTRUCTION, SFTDataConfig, build_sft_set, summary
from rlvr.data.worked import evaluate_steps
from rlvr.sampler import PromptFormat
from verifiers import get_verifier
from verifiers.extract import last_boxed

REPO = Path(__file__).resolve().parents[1]
LICENSES = {
    "gsm8k": "MIT",
    "mawps": "ODC-By",
    "asdiv": "CC BY-NC 4.0",
    "math": "MIT",
    "mathdial": "CC BY-SA 4.0",
}
FILES = {
    "gsm8k": "gsm8k_train.jsonl",
    "mawps": "mawps.jsonl.gz",
    "asdiv": "asdiv.jsonl.gz",
    "math": "math_train.jsonl",
    "mathdial": "mathdial_test.jsonl.gz",
}


def source(name: str, path: Path | str, limit: int | None = 40, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": name, "path": str(path), "license": LICENSES[name], "limit": limit, **extra}


def build(
    tmp: Path, sources: list[dict[str, Any]], **extra: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = validate_recipe({"output_dir": str(tmp), "sources": sources, **extra}, schema=SFTDataConfig)
    card = build_sft_set(config)
    rows = [json.loads(line) for line in (tmp / "sft.jsonl").read_text().splitlines()]
    return card, rows


@pytest.fixture(scope="module")
def full_set(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[Any]]:
    """Every kind, small limits, a few two-problem conversations, decontaminated against GSM8K test."""
    sources = [source(name, shared_data / FILES[name]) for name in FILES]
    sources[3]["levels"] = [1, 2]
    decontaminate = [{"path": str(shared_data / "gsm8k_test.jsonl"), "field": "question"}]
    out = tmp_path_factory.mktemp("sft")
    return build(out, sources, two_problem_conversations=10, decontaminate=decontaminate)


def _value(node: ast.AST) -> Fraction:
    """A test-side evaluator (independent of `worked.py`): numbers, + - * /, unary minus."""
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in ops:
        return ops[type(node.op)](_value(node.left), _value(node.right))
    raise AssertionError(f"not arithmetic: {ast.dump(node)}")


def _number(text: str) -> Fraction:
    return Fraction(text.strip())


def test_gsm8k_solutions_lose_annotations_and_box_the_gold(full_set: Any, shared_data: Path) -> None:
    gold = {}
    for i, line in enumerate((shared_data / FILES["gsm8k"]).read_text().splitlines()):
        gold[f"gsm8k-{i}"] = json.loads(line)["answer"].split("####")[-1].strip().replace(",", "")
    card, rows = full_set
    gsm8k = [r for r in rows if r["source"] == "gsm8k"]
    assert len(gsm8k) + card["sources"]["gsm8k"]["in_two_problem_conversations"] == 40
    for row in gsm8k:
        solution = row["messages"][1]["content"]
        assert "<<" not in solution and ">>" not in solution and "####" not in solution
        assert solution.splitlines()[-1] == f"The answer is \\boxed{{{gold[row['id']]}}}."
        assert row["answer"] == gold[row["id"]] == last_boxed(solution)
    assert get_verifier("numeric").verify(gsm8k[0]["messages"][1]["content"], gsm8k[0]["answer"]).correct


@pytest.mark.parametrize("name", ["mawps", "asdiv"])
def test_equation_solutions_evaluate_to_the_gold(full_set: Any, name: str) -> None:
    card, rows = full_set
    kept = [r for r in rows if r["source"] == name]
    assert len(kept) + card["sources"][name]["in_two_problem_conversations"] == 40
    for row in kept:
        *steps, last = row["messages"][1]["content"].splitlines()
        assert steps and last == f"The answer is \\boxed{{{row['answer']}}}."
        for step in steps:
            left, right = step.split(" = ")
            assert _value(ast.parse(left, mode="eval").body) == _number(right), step
        assert _number(steps[-1].split(" = ")[1]) == _number(row["answer"])
        assert get_verifier("math").verify(row["messages"][1]["content"], row["answer"]).correct


def test_worked_steps_one_operation_a_line() -> None:
    value, lines = evaluate_steps("((22.0-14.0)/4.0)")
    assert (value, lines) == (2, ["22 - 14 = 8", "8 / 4 = 2"])
    assert evaluate_steps("50+20+1")[1] == ["50 + 20 + 1 = 71"]
    assert evaluate_steps("6*1 + 3*5")[1] == ["6 * 1 = 6", "3 * 5 = 15", "6 + 15 = 21"]
    assert evaluate_steps("10/4")[1] == ["10 / 4 = 2.5"]
    assert evaluate_steps("10/3")[1] == ["10 / 3 = 10/3"]


def test_an_equation_that_misses_the_gold_is_dropped_and_counted(shared_data: Path, tmp_path: Path) -> None:
    with gzip.open(shared_data / FILES["mawps"], "rt") as f:
        good, bad = (json.loads(next(f)) for _ in range(2))
    bad["equation"] = "X=(3.0+4.0)"  # gold stays as published: not 7
    unreadable = {**good, "equation": "X-6=52"}
    path = tmp_path / "mawps.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (good, bad, unreadable)) + "\n")
    card, rows = build(tmp_path / "out", [source("mawps", path, limit=None)])
    dropped = card["sources"]["mawps"]["dropped"]
    assert dropped == {"equation_mismatch": 1, "equation_unreadable": 1}
    assert card["sources"]["mawps"]["drop_examples"]["equation_mismatch"][0].startswith("line 2: ")
    assert [r["id"] for r in rows] == ["mawps-0"]


def test_decontamination_removes_a_held_out_problem(shared_data: Path, tmp_path: Path) -> None:
    with gzip.open(shared_data / FILES["asdiv"], "rt") as f:
        first = json.loads(f.readline())
    problem = f"{first['Body'].strip()}\n{first['Question'].strip()}"  # the RL builder's prompt text
    heldout = tmp_path / "heldout.parquet"
    write_prompt_file([PromptRow(id="asdiv-0", prompt=problem, answer="9", source="asdiv")], heldout)
    asdiv = source("asdiv", shared_data / FILES["asdiv"], limit=None)
    card, rows = build(tmp_path / "out", [asdiv], decontaminate=[{"path": str(heldout), "field": "prompt"}])
    assert problem not in {r["question"] for r in rows}
    assert card["sources"]["asdiv"]["dropped"]["contaminated:heldout"] >= 1
    assert card["decontamination"][0]["rows_dropped"] >= 1
    missing = {"path": str(tmp_path / "none.parquet"), "field": "prompt"}
    with pytest.raises(RecipeError, match="none.parquet does not exist"):
        build(tmp_path / "out2", [asdiv], decontaminate=[missing])
    card, _ = build(tmp_path / "out3", [asdiv], decontaminate=[{**missing, "optional": True}])
    assert card["decontamination"][0]["note"] == "absent (optional)"


def test_multi_turn_rows_alternate_and_end_with_the_assistant(full_set: Any) -> None:
    card, rows = full_set
    multi = [r for r in rows if len(r["messages"]) > 2]
    assert {r["source"] for r in multi} == {"mathdial", "two_problems"}
    assert card["two_problem_conversations"]["made"] == 10
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles[-1] == "assistant", row["id"]
        assert all(m["content"].strip() for m in row["messages"])
    for row in (r for r in rows if r["source"] == "mathdial"):
        assert "Here is my solution:" in row["messages"][0]["content"]
        assert row["messages"][0]["content"].startswith(row["question"])
        assert not any(re.match(r"\(\w+\)", m["content"]) for m in row["messages"][1::2])
        assert last_boxed(row["messages"][-1]["content"]) == row["answer"]
    for row in (r for r in rows if r["source"] == "two_problems"):
        assert row["messages"][2]["content"].endswith("\n" + INSTRUCTION)
    # MathDial's problems that are GSM8K test problems (200 of 599) never come in
    assert card["sources"]["mathdial"]["dropped"]["contaminated:gsm8k_test"] == 200


def test_a_malformed_line_is_counted_with_its_line(shared_data: Path, tmp_path: Path) -> None:
    good = (shared_data / FILES["gsm8k"]).read_text().splitlines()[:2]
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("\n".join([good[0], "{not json", "[1, 2]", '{"question": "q?"}', good[1]]) + "\n")
    card, rows = build(tmp_path / "out", [source("gsm8k", path, limit=None)])
    report = card["sources"]["gsm8k"]
    assert report["read"] == 5 and report["dropped"] == {"malformed": 3} and len(rows) == 2
    examples = report["drop_examples"]["malformed"]
    assert [e.split(":")[0] for e in examples] == ["line 2", "line 3", "line 4"]
    assert "line 2: not JSON" in summary(card)
    assert "line 2" in (tmp_path / "out" / "card.md").read_text()


def test_a_wrong_recipe_key_is_refused_by_name(tmp_path: Path) -> None:
    recipe = REPO / "recipes" / "smollm2-sft-data.yaml"
    with pytest.raises(RecipeError, match="two_problem_conversation"):
        load_recipe(recipe, ["two_problem_conversation=3"], schema=SFTDataConfig)
    bad_source = "sources=[{name: g, kind: gsm8k, path: x.jsonl, license: MIT, limt: 3}]"
    with pytest.raises(RecipeError, match="limt"):
        load_recipe(recipe, [bad_source], schema=SFTDataConfig)
    with pytest.raises(RecipeError, match="levels applies to kind math only"):
        load_recipe(recipe, [bad_source.replace("limt", "levels").replace("3", "[1]")], schema=SFTDataConfig)
    assert load_recipe(recipe, schema=SFTDataConfig).instruction == INSTRUCTION


def test_the_user_turn_is_the_rl_prompt(full_set: Any, shared_data: Path) -> None:
    """The user text is PromptFormat.text of a row with the same prompt, and the problem text is what
    `rlvr data build` makes of the same source row (recipes/smollm2-data.yaml's field mappings)."""
    _, rows = full_set
    prompt = PromptConfig(instruction=INSTRUCTION)
    fmt = PromptFormat(object(), prompt)  # type: ignore[arg-type]  # text() needs no tokenizer
    for row in (r for r in rows if r["source"] in FILES and r["source"] != "mathdial"):
        expected = fmt.text(PromptRow(id=row["id"], prompt=row["question"], answer=row["answer"]))
        assert row["messages"][0]["content"] == expected
    rl_sources = {
        s.name: s for s in load_recipe(REPO / "recipes/smollm2-data.yaml", schema=DataBuildConfig).sources
    }
    for name in ("mawps", "asdiv"):
        adapt = record_adapter(rl_sources[name].model_copy(update={"path": str(shared_data / FILES[name])}))
        with gzip.open(shared_data / FILES[name], "rt") as f:
            records = [json.loads(line) for line in f]
        for row in (r for r in rows if r["source"] == name):
            index = int(row["id"].rpartition("-")[2])
            assert row["question"] == adapt(records[index], index)["prompt"]


def test_the_command_is_deterministic_and_respects_limits(
    shared_data: Path, tmp_path: Path, capsys: Any
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        json.dumps({"sources": [source("mawps", shared_data / FILES["mawps"], limit=30)], "seed": 3})
    )
    for out in ("a", "b"):
        assert main(["data", "sft", str(recipe), f"output_dir={tmp_path / out}"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 30 conversations" in printed and "mawps: read 2373, kept 30 problems" in printed
    assert (tmp_path / "a/sft.jsonl").read_text() == (tmp_path / "b/sft.jsonl").read_text()
    assert json.loads((tmp_path / "a/card.json").read_text())["sources"]["mawps"]["kept_problems"] == 30
    assert main(["data", "sft", str(recipe), "sede=1"]) == 2
    assert "sede" in capsys.readouterr().err
