"""Quality on public real-answer pairs, rlvr's `math` and math-verify side by side (used by verifiers.py).

Two labelled sets, both in tests/data (see its README):

- math-verify tests: the 269 (gold, prediction, expected) cases of math-verify's own test suite, most of them
  model outputs its authors collected; the label is their expected verdict. math-verify runs as its tests run
  it (their `compare_strings`: the case's extraction targets, precision, strictness): at its best.
- issue kinds: the kinds of misses the verifier issues named (a draft inside `<think>`, mixed numbers,
  matrices, money and punctuation, a box given twice, `Answer $ 9 $`, ASCII inequalities, stated final
  sentences, answers grouped another way, and the ambiguous rulings of docs/verifiers.md), each with its
  near misses; reported per kind. math-verify runs with its defaults, as for the collected set.
- rlvr collected: model-style responses around real GSM8K, MATH and OlympiadBench golds (the endings models
  write: `\\boxed{}` in its places, "The answer is", "Final Answer: ...", units and names in the box, several
  boxes), each correct one beside a near miss. math-verify runs as a new user would call it:
  `verify(parse(gold), parse(response))` with its defaults.

For each grader: accuracy, false positives (a wrong answer scored right) and false negatives (a right answer
scored wrong), and the cases each gets wrong.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from verifiers import get_verifier

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SETS = {
    "math-verify tests": "math_verify_cases.jsonl",
    "rlvr collected": "real_answers.jsonl",
    "issue kinds": "verifier_kinds.jsonl",
}


def load(name: str) -> list[dict[str, Any]]:
    """(gold, response, label, config) rows of one set."""
    rows = []
    for line in (DATA / SETS[name]).read_text().splitlines():
        case = json.loads(line)
        rows.append(
            {
                "gold": case["gold"],
                "response": case.get("response", case.get("prediction")),
                "label": bool(case.get("label", case.get("expected"))),
                "config": case.get("config", {}),
                "where": case.get("source", "") + (f":{case['line']}" if "line" in case else ""),
                "kind": case.get("kind", ""),
            }
        )
    return rows


def _math_verify_as_in_its_tests(config: dict[str, Any]) -> Callable[[str, str], bool]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    targets = []
    for kind in config.get("match_types", ["latex", "expr"]):
        targets.append(
            LatexExtractionConfig(boxed_match_priority=0) if kind == "latex" else ExprExtractionConfig()
        )
    if config.get("call"):
        return lambda gold, response: bool(verify(parse(gold), parse(response)))

    def check(gold: str, response: str) -> bool:
        return bool(
            verify(
                parse(gold, targets),
                parse(response, targets),
                float_rounding=config.get("precision", 6),
                strict=config.get("strict", True),
                allow_set_relation_comp=config.get("allow_set_relation_comp", False),
            )
        )

    return check


def _math_verify_default(gold: str, response: str) -> bool:
    from math_verify import parse, verify

    return bool(verify(parse(gold if "$" in gold else f"${gold}$"), parse(response)))


def _score(rows: list[dict[str, Any]], verdicts: list[bool]) -> dict[str, Any]:
    fp = [row for row, ok in zip(rows, verdicts, strict=True) if ok and not row["label"]]
    fn = [row for row, ok in zip(rows, verdicts, strict=True) if not ok and row["label"]]
    brief = [
        {"where": r["where"], "gold": r["gold"][:80], "response_tail": r["response"][-120:]} for r in fp + fn
    ]
    return {
        "n": len(rows),
        "accuracy": round(1 - (len(fp) + len(fn)) / len(rows), 4),
        "false_positives": len(fp),
        "false_negatives": len(fn),
        "mistakes": brief,
    }


def real_answer_quality() -> dict[str, Any]:
    """{set name: {"rlvr": score, "math-verify": score, "n": rows}} over both labelled sets."""
    math = get_verifier("math")
    report: dict[str, Any] = {}
    for name in SETS:
        rows = load(name)
        ours = [math.verify(row["response"], row["gold"]).correct for row in rows]
        theirs = []
        for row in rows:
            check = _math_verify_as_in_its_tests(row["config"]) if name == "math-verify tests" else None
            try:
                theirs.append(
                    check(row["gold"], row["response"])
                    if check
                    else _math_verify_default(row["gold"], row["response"])
                )
            except Exception:
                theirs.append(False)
        report[name] = {"n": len(rows), "rlvr": _score(rows, ours), "math-verify": _score(rows, theirs)}
        if name == "issue kinds":
            report[name]["by_kind"] = _by_kind(rows, ours, theirs)
    return report


def _by_kind(rows: list[dict[str, Any]], ours: list[bool], theirs: list[bool]) -> dict[str, Any]:
    """{kind: {"n", "rlvr": score, "math-verify": score}}, without the cases (the set's score lists them)."""
    out: dict[str, Any] = {}
    for kind in sorted({row["kind"] for row in rows}):
        index = [i for i, row in enumerate(rows) if row["kind"] == kind]
        part = [rows[i] for i in index]
        scores = {
            grader: {k: v for k, v in _score(part, [verdicts[i] for i in index]).items() if k != "mistakes"}
            for grader, verdicts in (("rlvr", ours), ("math-verify", theirs))
        }
        out[kind] = {"n": len(index), **scores}
    return out


def print_real_answer_quality(report: dict[str, Any]) -> None:
    print("\nQuality on public real-answer pairs (FP: wrong scored right, FN: right scored wrong)")
    header = f"{'set':<20} {'n':>5} {'grader':<12} {'accuracy':>9} {'FP':>4} {'FN':>4}"
    print(header)
    print("-" * len(header))
    for name, part in report.items():
        for grader in ("rlvr", "math-verify"):
            score = part[grader]
            print(
                f"{name:<20} {part['n']:>5} {grader:<12} {score['accuracy']:>9.2%} "
                f"{score['false_positives']:>4} {score['false_negatives']:>4}"
            )
        for kind, by in part.get("by_kind", {}).items():
            cells = "  ".join(
                f"{grader} {by[grader]['accuracy']:>7.2%} FP {by[grader]['false_positives']:>2} "
                f"FN {by[grader]['false_negatives']:>2}"
                for grader in ("rlvr", "math-verify")
            )
            print(f"  {kind:<34} {by['n']:>4}  {cells}")


def section() -> dict[str, Any]:
    """The real-answer table, printed, with the time it was measured: the benchmark's "real_answers"."""
    report = real_answer_quality()
    print_real_answer_quality(report)
    return {**report, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
