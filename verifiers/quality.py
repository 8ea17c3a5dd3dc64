"""Measure a verifier on gold answers: each gold must verify against itself, and a perturbed gold must not.

Used by tests/test_verifier_quality.py (a sample) and `benchmarks/verifiers.py --full` (every gold).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def perturb_last_digit(gold: str) -> str | None:
    """The gold with its last digit changed (d → d+1 mod 10), or None when it has no digit."""
    for i in range(len(gold) - 1, -1, -1):
        if gold[i].isdigit():
            return gold[:i] + str((int(gold[i]) + 1) % 10) + gold[i + 1 :]
    return None


def flip_sign(gold: str) -> str | None:
    """The gold with its sign flipped, or None when that is not a different answer (0, sets, equations)."""
    text = gold.strip()
    if not text or any(mark in text for mark in ("=", ",", "\\{", "[", "(", "\\pm", "\\cup", "\\in")):
        return None
    if text.lstrip("-").strip("0.") == "":
        return None
    return text[1:].strip() if text.startswith("-") else "-" + text


@dataclass
class QualityReport:
    golds: int = 0
    self_correct: int = 0
    perturbed: int = 0
    perturbed_rejected: int = 0
    self_failures: list[dict[str, Any]] = field(default_factory=list)
    false_positives: list[dict[str, Any]] = field(default_factory=list)

    @property
    def self_rate(self) -> float:
        return self.self_correct / max(self.golds, 1)

    @property
    def perturbed_rate(self) -> float:
        return self.perturbed_rejected / max(self.perturbed, 1)


def measure(verifier: Any, golds: Iterable[tuple[str, str]]) -> QualityReport:
    """Runs the self-check and the perturbation check over (source, gold) pairs."""
    report = QualityReport()
    for source, gold in golds:
        report.golds += 1
        result = verifier.verify("So the answer is \\boxed{" + gold + "}.", gold)
        if result.correct:
            report.self_correct += 1
        else:
            report.self_failures.append({"source": source, "gold": gold, "status": result.status})
        for perturbed in {perturb_last_digit(gold), flip_sign(gold)} - {None, gold}:
            report.perturbed += 1
            if verifier.verify("\\boxed{" + perturbed + "}", gold).correct:
                report.false_positives.append({"source": source, "gold": gold, "perturbed": perturbed})
            else:
                report.perturbed_rejected += 1
    return report
