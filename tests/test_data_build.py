"""The dataset builder on the public data beside the repository: conversion, filtering, dedupe,
decontamination, balancing and resumable difficulty."""

from __future__ import annotations

import json
import random
import time
from functools import partial
from pathlib import Path

import pytest

from rlvr.config import RecipeError, load_recipe
from rlvr.data import dedup, difficulty, read_prompt_file
from rlvr.data.build import DataBuildConfig, SourceConfig, build, read_source
from rlvr.data.filters import (
    OPTION_DEPENDENT_STEM,
    filter_verifiable,
    option_answer,
    to_open_ended,
    verifiability_reason,
)
from rlvr.data.sources import LETTERS, strip_option_label
from rlvr.data.synthesis import VoteJudge, majority_answer, synthesize

REPO = Path(__file__).resolve().parents[1]


def converted(shared_data: Path, name: str, adapter: str, path: str | list[str]) -> list[dict]:
    ds = read_source(SourceConfig(name=name, path=path, adapter=adapter, license="test"), num_proc=1)
    return [filter_verifiable(to_open_ended(r)) for r in ds.to_list()]


def test_aqua_items_become_open_ended_with_the_correct_options_content(shared_data: Path) -> None:
    assert option_answer("25") == "25" and strip_option_label("C)25") == "25"
    assert option_answer("Rs. 1,250") == "1250" and option_answer("12 km/hr") == "12"
    rows = converted(shared_data, "aqua", "aqua", [str(shared_data / "aqua_rat_dev.jsonl")])
    kept = [r for r in rows if not r["drop"]]
    assert len(kept) > 150  # most AQuA items survive
    records = [json.loads(x) for x in (shared_data / "aqua_rat_dev.jsonl").read_text().splitlines()]
    for row in random.Random(0).sample(kept, 40):
        original = records[int(row["id"].rsplit("-", 1)[1])]  # meta keeps only what the row needs later
        assert set(json.loads(row["meta"])) <= {"rationale", "license"}
        option = original["options"][LETTERS.index(original["correct"])]  # e.g. "C)25"
        assert option.startswith(original["correct"] + ")")
        content = option.split(")", 1)[1]
        assert row["answer"] == option_answer(content) and row["answer"].rstrip("%") in content.replace(
            ",", ""
        )
        assert row["prompt"] == original["question"].strip()  # the stem, without its options


def test_option_dependent_mmlu_stems_are_dropped_with_their_reason(shared_data: Path) -> None:
    rows = converted(shared_data, "mmlu", "mmlu", str(shared_data / "mmlu.jsonl.gz"))
    which = [r for r in rows if "which of the following" in r["prompt"].lower()]
    assert len(which) > 1000
    assert all(r["drop"] == "mc_option_dependent_stem" for r in which)
    reasons = {r["drop"] for r in rows}
    assert {"mc_options_refer_to_each_other", "mc_option_not_an_answer"} <= reasons
    kept = [r for r in rows if not r["drop"]]
    assert kept and not any(OPTION_DEPENDENT_STEM.search(r["prompt"]) for r in kept)


def test_unverifiable_math_answers_are_filtered_with_reasons(shared_data: Path) -> None:
    assert verifiability_reason("\\text{even}", "Is f even or odd?", "math") == "text_answer"
    assert verifiability_reason("x = 1 and x = 2", "Solve", "math") == "multi_part"
    assert verifiability_reason("", "Prove that n^2 >= n.", "math") == "no_answer"
    assert verifiability_reason("\\frac{\\sqrt{3}}{2}", "Compute sin 60°.", "math") == ""
    assert verifiability_reason("x" * 60, "Simplify", "math") == "long_answer"
    rows = converted(shared_data, "math", "math", str(shared_data / "math_train.jsonl"))
    reasons: dict[str, int] = {}
    for r in rows:
        reasons[r["drop"]] = reasons.get(r["drop"], 0) + 1
    assert reasons[""] > 10_000  # most of MATH is checkable
    assert reasons.get("text_answer", 0) > 20 and reasons.get("long_answer", 0) > 5
    for r in rows:
        if r["drop"] == "text_answer":
            assert any(c.isalpha() for c in r["answer"])


def test_near_duplicates_and_exact_normalised_duplicates() -> None:
    base = (
        "A farmer has 12 cows and buys 7 more at the market on Tuesday. Each cow gives 9 litres of milk a "
        "day, and he sells the milk for 2 dollars a litre to the dairy in the village next to his farm. "
        "How much money does he make from the milk in one week if he keeps 10 litres a day for his family?"
    )
    texts = [base, base.replace("Tuesday", "Monday"), "What is the derivative of sin(x) with respect to x?"]
    assert dedup.near_duplicates(texts, threshold=0.7) == {1: 0}  # Jaccard of the 5-gram sets: 0.86
    assert dedup.text_hash("How many  cows?") == dedup.text_hash("how many cows")


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def qa_config(tmp_path: Path, name: str, rows: list[dict], **fields: object) -> DataBuildConfig:
    """A build of one generic source of {"q", "a"} records into tmp_path/out."""
    source = SourceConfig(
        name=name,
        path=write_jsonl(tmp_path / f"{name}.jsonl", rows),
        adapter="generic",
        license="CC0",
        question_field="q",
        answer_field="a",
    )
    return DataBuildConfig(output_dir=str(tmp_path / "out"), num_proc=1, sources=[source], **fields)


def test_build_decontaminates_a_planted_test_question_and_counts_malformed_rows(
    shared_data: Path, tmp_path: Path
) -> None:
    test_question = json.loads((shared_data / "gsm8k_test.jsonl").read_text().splitlines()[5])["question"]
    own = [
        {"q": "What is 17 + 25?", "a": "42"},
        {"q": test_question, "a": "7"},  # planted: an evaluation question
        {"q": "What is 6 * 7?", "a": "42"},
        {"a": "5"},  # malformed: no question
    ]
    config = qa_config(
        tmp_path,
        "own",
        own,
        decontaminate=[{"path": str(shared_data / "gsm8k_test.jsonl"), "field": "question"}],
        difficulty={"enabled": False},
        jsonl=True,
    )
    card = build(config)
    out = [json.loads(x) for x in (tmp_path / "out/prompts.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in out] == ["What is 17 + 25?", "What is 6 * 7?"]
    dropped = {(d["stage"], d["reason"].split(":")[0]): d["rows"] for d in card["dropped"]}
    assert dropped == {("decontaminate", "contaminated"): 1, ("read", "malformed"): 1}
    assert (tmp_path / "out/data_card.md").read_text().count("contaminated") == 1
    assert (tmp_path / "out/prompts.parquet").exists()


def pass_table_rows(n: int, k: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    sources = ["gsm8k", "math", "aqua"]
    # a skewed pool: 25% never solved, 15% always solved, the rest in between
    rows = []
    for i in range(n):
        u = rng.random()
        solved = 0 if u < 0.25 else k if u > 0.85 else rng.randint(1, k - 1)
        rows.append({"id": f"r{i}", "source": sources[i % 3], "solved": solved})
    return rows


def test_balancing_reaches_the_target_fraction_at_2000_items() -> None:
    k = 8
    rows = pass_table_rows(5000, k)
    chosen, report = difficulty.balance(rows, k, target_size=2000, unsolved_fraction=0.5, seed=3)
    assert len(chosen) == 2000 and not report["short_of_target"]
    fraction = sum(r["solved"] == 0 for r in chosen) / len(chosen)
    assert abs(fraction - 0.5) <= 0.02
    assert all(r["solved"] < k for r in chosen)  # simple items (solved k/k) excluded
    by_source = {s: sum(r["source"] == s for r in chosen) for s in ("gsm8k", "math", "aqua")}
    assert max(by_source.values()) - min(by_source.values()) < 60  # stratified: sources stay balanced
    again, _ = difficulty.balance(rows, k, target_size=2000, unsolved_fraction=0.5, seed=3)
    assert [r["id"] for r in again] == [r["id"] for r in chosen]  # deterministic given the seed
    # too few unsolved items for the target: the set shrinks, the fraction holds
    few, report = difficulty.balance(rows[:1000], k, target_size=2000, unsolved_fraction=0.5)
    assert report["short_of_target"] and abs(report["unsolved_fraction"] - 0.5) <= 0.02


class Interrupted(Exception):
    pass


def test_difficulty_resumes_after_an_interruption_without_redoing_chunks(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "source": "s"} for i in range(50)]
    calls: list[list[str]] = []
    die_at = [3]

    def solve(chunk: list[dict]) -> list[int]:
        calls.append([r["id"] for r in chunk])
        if len(calls) == die_at[0]:
            raise Interrupted  # the first build dies in its third chunk
        return [int(r["id"][1:]) % 5 for r in chunk]

    with pytest.raises(Interrupted):
        difficulty.estimate(rows, solve, k=4, work_dir=tmp_path, chunk_size=10)
    assert len(calls) == 3
    calls.clear()
    die_at[0] = 0
    outcomes, counts = difficulty.estimate(rows, solve, k=4, work_dir=tmp_path, chunk_size=10)
    assert (counts["chunks_done"], counts["chunks_skipped"], counts["prompts"]) == (3, 2, 30)
    assert calls[0][0] == "r20"  # started at the interrupted chunk
    assert {i: o["solved"] for i, o in outcomes.items()} == {f"r{i}": i % 5 for i in range(50)}
    assert {o["attempts"] for o in outcomes.values()} == {4}  # a count of k: all k attempts made
    with pytest.raises(ValueError, match="different build"):
        difficulty.estimate(rows, solve, k=8, work_dir=tmp_path, chunk_size=10)


def test_data_recipe_validates_and_names_bad_fields() -> None:
    config = load_recipe(REPO / "recipes/data.yaml", schema=DataBuildConfig)
    assert len(config.sources) == 19 and all(s.license for s in config.sources)
    assert {s.adapter for s in config.sources} == {
        "gsm8k",
        "math",
        "aqua",
        "mmlu",
        "tal",
        "mathqa_mc",
        "arc_mc",
        "generic",
    }
    with pytest.raises(ValueError, match="only adapter: generic reads question_field"):
        SourceConfig(name="g", path="x.jsonl", adapter="gsm8k", license="MIT", question_field="q")
    with pytest.raises(ValueError, match="license"):
        SourceConfig(name="g", path="x.jsonl", adapter="gsm8k")
    with pytest.raises(RecipeError, match="difficulty.kk"):
        load_recipe(REPO / "recipes/data.yaml", ["difficulty.kk=3"], schema=DataBuildConfig)


@pytest.mark.slow
def test_build_measures_difficulty_with_the_tiny_model_on_ray(tmp_path: Path) -> None:
    """Stage 6 for real: a RolloutWorker (torch engine, tiny random model) and a VerifierWorker on a local Ray
    cluster sample k answers per prompt. A random model solves nothing, so every row is 0/k, the balance has
    no partially solved pool and says so, and the output is empty rather than off-target."""
    from rlvr.cluster import ray_session

    rows = [{"q": f"What is {i} + {i}?", "a": str(2 * i)} for i in range(12)]
    config = qa_config(
        tmp_path,
        "sums",
        rows,
        difficulty={"preset": "tiny", "engine": "torch", "k": 2, "max_new_tokens": 8, "chunk_size": 5},
        synthesis={"enabled": True, "seeds": 4, "k": 2},
    )
    with ray_session(4, log_to_driver=False):
        card = build(config)
    # the random model's "new problems" are rejected with reasons (no majority answer, or nothing written)
    synthesis = {d["reason"]: d["rows"] for d in card["dropped"] if d["stage"] == "synthesis"}
    assert card["synthesized"] == 0 and sum(synthesis.values()) == 4
    assert set(synthesis) <= {"synthesis_no_majority", "synthesis_empty"}
    report = card["synthesis"]
    assert (report["seeds"], report["written"], report["passed_the_filter"]) == (4, 4, 0)
    assert len(report["examples"]) == 4 - report["empty"]  # every non-empty problem, with its fate
    assert "## Synthesis" in (tmp_path / "out/data_card.md").read_text()
    assert card["difficulty_chunks"] == {"chunks_done": 3, "chunks_skipped": 0}
    assert card["solve_histogram"] == {0: 12}
    assert card["balance"]["pool_partially_solved"] == 0 and card["balance"]["short_of_target"]
    assert (tmp_path / "out/solve_rate.png").exists()
    assert len(list((tmp_path / "out/difficulty").glob("chunk_*.jsonl"))) == 3


def test_build_balances_with_a_pass_table(tmp_path: Path) -> None:
    rows = [{"q": f"What is {i} times 3?", "a": str(3 * i)} for i in range(400)]
    table = [
        {"id": f"t-{i}", "solved": 0 if i % 3 == 0 else (4 if i % 7 == 0 else 1 + i % 3)} for i in range(400)
    ]
    config = qa_config(
        tmp_path,
        "t",
        rows,
        near_duplicate_threshold=1.0,  # the synthetic stems differ in one number only
        difficulty={"k": 4, "pass_table": write_jsonl(tmp_path / "table.jsonl", table), "target_size": 200},
    )
    card = build(config)
    assert card["output_rows"] == 200 and card["balance"]["unsolved_fraction"] == 0.5
    out = load_parquet(tmp_path / "out/prompts.parquet")
    assert set(out[0]) >= {"id", "prompt", "answer", "verifier", "source", "meta", "solved", "k", "pass_rate"}
    assert all(r["solved"] < 4 for r in out)


def test_held_out_rows_are_written_apart_and_never_measured_or_trained_on(tmp_path: Path) -> None:
    rows = [{"q": f"What is {i} times 3?", "a": str(3 * i)} for i in range(120)]
    measured: list[str] = []

    def solve(batch: list[dict]) -> list[int]:
        measured.extend(r["id"] for r in batch)
        return [int(r["id"].rsplit("-", 1)[1]) % 2 for r in batch]

    config = qa_config(
        tmp_path, "t", rows, near_duplicate_threshold=1.0, heldout_size=20, difficulty={"k": 2}, jsonl=True
    )
    card = build(config, solve=solve)
    held = read_prompt_file(tmp_path / "out/heldout.parquet").rows
    assert read_prompt_file(tmp_path / "out/heldout.jsonl").rows == held  # jsonl: true writes both
    trained = read_prompt_file(tmp_path / "out/prompts.parquet").rows
    assert len(held) == 20 and card["heldout"]["rows"] == 20 and card["heldout"]["by_source"] == {"t": 20}
    held_ids = {r.id for r in held}
    assert not held_ids & {r.id for r in trained} and not held_ids & set(measured)
    assert len(measured) == 100 and {r.id for r in trained} <= set(measured) and len(trained) >= 80
    assert "heldout.parquet" in (tmp_path / "out/data_card.md").read_text()


def test_a_missing_or_unparsable_source_file_is_a_recipe_error_naming_the_source(tmp_path: Path) -> None:
    missing = SourceConfig(name="s", path=str(tmp_path / "nope.jsonl"), adapter="gsm8k", license="MIT")
    with pytest.raises(RecipeError, match="source 's': no such file"):
        read_source(missing, num_proc=1)
    (tmp_path / "bad.jsonl").write_text("not json at all\n[1, 2]\n")  # no line is a record: not JSON Lines
    bad = SourceConfig(name="s", path=str(tmp_path / "bad.jsonl"), adapter="gsm8k", license="MIT")
    with pytest.raises(RecipeError, match="source 's': cannot read .*bad.jsonl.*no line is a JSON object"):
        read_source(bad, num_proc=1)
    (tmp_path / "bad.parquet").write_text("not parquet")
    bad = SourceConfig(name="s", path=str(tmp_path / "bad.parquet"), adapter="gsm8k", license="MIT")
    with pytest.raises(RecipeError, match="source 's': cannot read .*bad.parquet.*magic bytes"):
        read_source(bad, num_proc=1)


def gsm8k_line(i: int, **extra: object) -> str:
    return json.dumps(
        {"question": f"Tom has {i} apples and buys 2. How many now?", "answer": f"#### {i + 2}"} | extra
    )


def test_bad_lines_of_a_jsonl_source_are_counted_by_line_and_its_good_rows_kept(tmp_path: Path) -> None:
    """One bad line made `datasets` refuse the whole file (naming a wrong row): now each line on its own."""
    lines = [
        gsm8k_line(1),
        gsm8k_line(2, level=3),  # extra fields of different types on different lines: kept apart from Arrow
        "",
        '{"question": "abc',
        "[1, 2, 3]",
        "this is not JSON",
        gsm8k_line(3, level="hard", tags=["x"]),
    ]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    bad = SourceConfig(name="bad", path=str(tmp_path / "bad.jsonl"), adapter="gsm8k", license="MIT")
    clean = SourceConfig(  # read by `datasets` as before; concatenated with the line-by-line one
        name="clean",
        path=write_jsonl(tmp_path / "clean.jsonl", [json.loads(gsm8k_line(7))]),
        adapter="gsm8k",
        license="MIT",
    )
    config = DataBuildConfig(
        output_dir=str(tmp_path / "out"), num_proc=1, sources=[bad, clean], difficulty={"enabled": False}
    )
    card = build(config)
    assert card["input_rows"] == {"bad": 6, "clean": 1}  # blank line skipped, bad ones counted
    malformed = [(d["stage"], d["source"], d["reason"], d["rows"]) for d in card["dropped"]]
    assert [m[:2] + m[3:] for m in malformed] == [("read", "bad", 1)] * 3
    reasons = [m[2] for m in malformed]
    assert reasons[0].startswith("malformed: line 4: not JSON: Unterminated string")
    assert reasons[1] == "malformed: line 5: an array, not a JSON object"
    assert reasons[2].startswith("malformed: line 6: not JSON: Expecting value")
    out = sorted((r.id, r.answer) for r in read_prompt_file(tmp_path / "out/prompts.parquet").rows)
    assert out == [("bad-0", "3"), ("bad-1", "4"), ("bad-5", "5"), ("clean-0", "9")]
    assert all(r in (tmp_path / "out/data_card.md").read_text() for r in reasons)


def test_line_by_line_reading_keeps_the_limit_and_names_the_file_of_several(tmp_path: Path) -> None:
    import gzip

    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write("\n".join([gsm8k_line(1), "oops", gsm8k_line(2), gsm8k_line(3)]) + "\n")
    write_jsonl(tmp_path / "b.jsonl", [json.loads(gsm8k_line(4))])
    paths = [str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.jsonl")]
    source = SourceConfig(name="s", path=paths, adapter="gsm8k", license="MIT")
    drops = [r["drop"].split(": not JSON")[0] for r in read_source(source, num_proc=1)]
    assert drops == ["", "malformed: a.jsonl.gz line 2", "", "", ""]
    assert len(read_source(source, num_proc=1, limit=3)) == 3  # the malformed line counts as read
    assert [r["answer"] for r in read_source(source.model_copy(update={"limit": 2}), num_proc=1)] == ["3", ""]


def load_parquet(path: Path) -> list[dict]:
    import datasets

    return datasets.Dataset.from_parquet(str(path)).to_list()


def test_majority_answer_needs_a_strict_majority() -> None:
    with VoteJudge() as judge:
        same = partial(judge.same, "math")
        assert majority_answer(["so \\boxed{12}", "\\boxed{12.0}", "\\boxed{13}"], same) == ("12", 2)
        assert majority_answer(["\\boxed{12}", "\\boxed{13}", "no answer", "\\boxed{14}"], same) == (None, 1)
        assert majority_answer(["\\boxed{1}", "\\boxed{2}"], same)[0] is None  # a tie is not a majority
        assert majority_answer(["nothing", "\\boxed{"], same) == (None, 0)
        drafts = ["<think>\\boxed{12}</think>\\boxed{13}", "<think>\\boxed{12}", "\\boxed{13}"]
        assert majority_answer(drafts, same) == ("13", 2)  # a draft inside <think> is no vote
        chained = ["\\boxed{1011}", "\\boxed{1011_2}", "\\boxed{1011_3}"]  # each matches 1011, not each other
        assert majority_answer(chained, same) == ("1011", 2)
        assert majority_answer(["\\boxed{28\\%}", "\\boxed{0.28}", "\\boxed{28}"], same) == ("28\\%", 2)


def test_the_vote_survives_a_verifier_that_hangs_or_crashes() -> None:
    """The vote runs the seed's verifier on model answers in a pool worker: a comparison that hangs past the
    soft limit or kills its process is a different answer, and the build goes on."""
    spec = "tests.verifier_fixtures:BoxedCommandVerifier"  # `\\boxed{stuck:60}` is the command `stuck:60`
    with VoteJudge(soft_timeout_s=0.3) as judge:
        same = partial(judge.same, spec)
        started = time.monotonic()
        assert majority_answer(["\\boxed{stuck:60}", "\\boxed{exit:}", "\\boxed{x}"], same) == (None, 1)
        assert time.monotonic() - started < 30  # the hung comparison was killed, not waited for
        assert majority_answer(["\\boxed{x}", "\\boxed{x}", "\\boxed{y}"], same) == ("x", 2)  # still voting


def test_synthesized_problems_are_accepted_only_by_majority_and_then_filtered(tmp_path: Path) -> None:
    """The acceptance rule with a scripted writer/solver in place of the model: problem 0's solutions agree,
    problem 1's do not, the third seed's problem comes back empty, and problem 2's agreed answer is prose."""
    scripts = {
        "What is 2 + 2?": ("What is 3 + 5?", ["\\boxed{8}", "\\boxed{8}", "\\boxed{9}"]),
        "What is 4 + 1?": ("What is 7 + 1?", ["\\boxed{8}", "\\boxed{6}", "\\boxed{7}"]),
        "What is 9 + 9?": ("", []),
        "Name a prime.": ("Name an even prime.", ["\\boxed{two only}"] * 3),
    }
    by_solve_prompt = {problem: sols for problem, sols in scripts.values() if problem}

    def sample(texts: list[str], n: int) -> list[list[str]]:
        out = []
        for text in texts:
            seed = next((q for q in scripts if q in text and "New problem" in text), None)
            if seed is not None:
                out.append([scripts[seed][0]] * n)
            else:
                problem = next(p for p in by_solve_prompt if text.startswith(p))
                out.append(by_solve_prompt[problem][:n])
        return out

    seeds = [
        {"id": f"s{i}", "prompt": q, "verifier": "math", "source": "seed"} for i, q in enumerate(scripts)
    ]
    rows, rejected, fates = synthesize(seeds, sample, k=3)
    assert [(r["prompt"], r["answer"]) for r in rows] == [("What is 3 + 5?", "8")]
    assert [(f["problem"], f["answer"], f["votes"], f["fate"]) for f in fates] == [
        ("What is 3 + 5?", "8", 2, "kept"),
        ("What is 7 + 1?", None, 1, "synthesis_no_majority"),
        ("Name an even prime.", "two only", 3, "synthesis_text_answer"),
    ]
    assert json.loads(rows[0]["meta"])["seed_id"] == "s0" and rows[0]["source"] == "synthetic_seed"
    assert rejected == {"synthesis_no_majority": 1, "synthesis_empty": 1, "synthesis_text_answer": 1}


def test_rlvr_data_build_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    rlvr = str(Path(sys.executable).with_name("rlvr"))
    base = [rlvr, "data", "build", "recipes/data.yaml", f"output_dir={tmp_path}", "limit_per_source=40"]
    refused = subprocess.run(base, cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 2 and "difficulty.model" in refused.stderr  # says what to set
    assert not (tmp_path / "prompts.parquet").exists()
    done = subprocess.run(
        [*base, "difficulty.enabled=false", "heldout_size=20"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads((tmp_path / "data_card.json").read_text())
    names = [s.name for s in load_recipe(REPO / "recipes/data.yaml", schema=DataBuildConfig).sources]
    assert card["input_rows"] == dict.fromkeys(names, 40)
    assert 0 < card["output_rows"] < 40 * len(names) and (tmp_path / "prompts.jsonl").exists()
    # the trainer's reader takes the parquet as it is: every row well formed, each with its source's license
    prompts = read_prompt_file(tmp_path / "prompts.parquet")
    assert prompts.malformed == 0 and len(prompts.rows) == card["output_rows"]
    licenses = {
        s.name: s.license for s in load_recipe(REPO / "recipes/data.yaml", schema=DataBuildConfig).sources
    }
    assert all(r.meta["license"] == licenses[r.source] for r in prompts.rows)
    assert sum(card["output_by_license"].values()) == card["output_rows"]
    # the console names every file written (the held-out set too) and the malformed rows dropped
    wrote = next(line for line in done.stdout.splitlines() if line.startswith("wrote "))
    files = wrote[wrote.index("(") + 1 : -1].split(", ")
    assert (
        "heldout.parquet" in files
        and "heldout.jsonl" in files
        and "prompts.jsonl" in files
        and all((tmp_path / f).exists() for f in files)
    )
    assert f"held out {card['heldout']['rows']} rows" in done.stdout and card["heldout"]["rows"] == 20
    malformed = sum(d["rows"] for d in card["dropped"] if d["reason"].startswith("malformed"))
    assert f"{malformed} malformed source rows dropped" in done.stdout
    markdown = (tmp_path / "data_card.md").read_text()
    for section in ("## Per source", "## Rows per license", "## Decontamination", "## Samples", "### tal"):
        assert section in markdown
    assert all(len(card["samples"][name]) == min(20, n) for name, n in card["output_by_source"].items())


def test_early_stopping_knows_a_prompts_class_from_its_first_attempts() -> None:
    """Balancing needs never solved / solved / simple: with nothing too simple (max_solve_rate 1), one right
    attempt decides; with max_solve_rate < 1, one right and enough wrong that it cannot be simple."""
    first_right = difficulty.decided(8, 1.0)
    assert first_right(1, 0) and first_right(1, 5) and not first_right(0, 7)
    not_simple = difficulty.decided(8, 0.99)  # simple: 8 of 8
    assert not not_simple(1, 0) and not_simple(1, 1) and not not_simple(7, 0)
    half = difficulty.decided(8, 0.5)  # simple: more than 4 of 8
    assert not half(1, 3) and half(1, 4)


@pytest.mark.slow
def test_early_stopping_samples_fewer_attempts_with_the_tiny_model_on_ray(tmp_path: Path) -> None:
    """Stage 6 on a stratified sample, one attempt per round: a prompt leaves at its first right answer (the
    tiny random model's character output does hit a one-digit gold now and then, checked by `numeric`), the
    others take all k; the card has the speed, the saving and the full set's cost at that speed."""
    import ray

    long = "Take your time and think it over. " * 3  # every tenth prompt is over max_prompt_tokens
    rows = [
        {"q": (long if i % 10 == 0 else "") + f"What is {i} plus zero?", "a": str(i % 10)} for i in range(60)
    ]
    config = qa_config(
        tmp_path,
        "digits",
        rows,
        near_duplicate_threshold=1.0,
        difficulty={
            "preset": "tiny",
            "engine": "torch",
            "k": 6,
            "max_new_tokens": 8,
            "chunk_size": 20,
            "early_stop": True,
            "max_solve_rate": 1.0,
            "sample_size": 40,
            "max_prompt_tokens": 60,  # characters, with the tiny model's tokenizer
        },
    )
    config.sources[0].verifier = "numeric"
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        card = build(config)
    finally:
        ray.shutdown()
    chunks = [
        json.loads(x)
        for p in sorted((tmp_path / "out/difficulty").glob("chunk_*.jsonl"))
        for x in p.read_text().splitlines()
    ]
    too_long = [c for c in chunks if c.get("skipped") == "prompt_too_long"]
    assert too_long and all(c["attempts"] == 0 and int(c["id"].split("-")[1]) % 10 == 0 for c in too_long)
    dropped = {(d["stage"], d["reason"]): d["rows"] for d in card["dropped"]}
    assert dropped[("difficulty", "not_in_sample")] == 20
    assert dropped[("difficulty", "prompt_too_long")] == len(too_long)
    run, sampled = card["difficulty_run"], 40 - len(too_long)
    assert run["prompts"] == sampled and run["attempts_without_early_stop"] == 6 * sampled
    assert 0 < run["attempts_saved"] < 1 and run["attempts"] < 6 * sampled
    assert run["prompts_per_s"] > 0 and run["tokens_per_s"] > 0 and run["full_set"]["prompts"] == 60
    chunks = [c for c in chunks if not c.get("skipped")]
    assert sum(c["attempts"] for c in chunks) == run["attempts"]
    for c in chunks:  # stopped at the first right attempt, or all k wrong
        assert (c["solved"], c["attempts"] < 6) in {(1, True), (1, False), (0, False)}
        assert c["solved"] == 1 or c["attempts"] == 6
    out = load_parquet(tmp_path / "out/prompts.parquet")
    assert out and all(r["k"] <= 6 and r["solved"] <= 1 for r in out)
    assert "## Difficulty run" in (tmp_path / "out/data_card.md").read_text()
