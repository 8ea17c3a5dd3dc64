"""The math verifier on real gold answers (GSM8K, MATH): golds verify against themselves, perturbations don't.

This runs on a fixed random sample; `benchmarks/verifiers.py --full` runs every gold answer.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from verifiers import get_verifier
from verifiers.quality import flip_sign, perturb_last_digit

pytestmark = pytest.mark.usefixtures("generous_verifier_limits")  # correctness, not speed

SAMPLE = 1500


def gold_answers(data: Path) -> list[str]:
    golds = []
    for name in ("gsm8k_train.jsonl", "gsm8k_test.jsonl"):
        for line in (data / name).read_text().splitlines():
            golds.append(json.loads(line)["answer"].split("####")[-1].strip())
    for line in (data / "math_train.jsonl").read_text().splitlines():
        golds.append(json.loads(line)["answer"])
    return [g for g in golds if g.strip()]


def test_gold_answers_verify_and_perturbed_ones_do_not(shared_data: Path) -> None:
    golds = random.Random(0).sample(gold_answers(shared_data), SAMPLE)
    math = get_verifier("math")
    misses = [g for g in golds if not math.verify("So the answer is \\boxed{" + g + "}.", g).correct]
    assert len(misses) / len(golds) <= 0.001, misses

    perturbed = [(g, p) for g in golds for p in (perturb_last_digit(g), flip_sign(g)) if p and p != g]
    accepted = [(g, p) for g, p in perturbed if math.verify("\\boxed{" + p + "}", g).correct]
    assert len(accepted) / len(perturbed) <= 0.01, accepted


def test_perturbations() -> None:
    assert perturb_last_digit("\\frac{3}{4}") == "\\frac{3}{5}"
    assert perturb_last_digit("x") is None
    assert flip_sign("-5") == "5" and flip_sign("\\frac12") == "-\\frac12"
    assert flip_sign("0") is None and flip_sign("x = 0") is None  # a sign there changes nothing


def olympiad_golds(data: Path) -> list[str]:
    """OlympiadBench's final answers (several per problem are joined as `$a$, $b$`), as the golds come."""
    import gzip

    golds = []
    with gzip.open(data / "qwen25math_evalsets.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if "olympiadbench" in record["_src_file"]:
                golds.append(", ".join(record["final_answer"]))
    return golds


def test_olympiad_golds_verify_written_as_models_write_them(shared_data: Path) -> None:
    """Every OlympiadBench gold against the same answer boxed once, boxed per value, and stated; its last
    digit changed must not verify."""
    math = get_verifier("math")
    misses, accepted = [], []
    for gold in olympiad_golds(shared_data):
        parts = [part.strip().strip("$").strip() for part in re.split(r"\$\s*,\s*\$", gold)]
        plain = ", ".join(parts)
        responses = [
            f"So the answer is $\\boxed{{{plain}}}$.",
            "Thus " + " and ".join(f"$\\boxed{{{part}}}$" for part in parts) + ".",
        ]
        misses += [(gold, r) for r in responses if not math.verify(r, gold).correct]
        changed = perturb_last_digit(plain)
        if changed and changed != plain and math.verify(f"\\boxed{{{changed}}}", gold).correct:
            accepted.append((gold, changed))
    assert not misses, misses[:5]
    assert not accepted, accepted[:5]
