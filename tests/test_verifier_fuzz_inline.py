"""10,000 adversarial inputs through every built-in verifier called inline (no pool), each under a wall-clock
guard (a hard stop at 10 s): no call may use 1 s of CPU, take 1 s of wall time (but for 0.1% of calls that a
busy machine deschedules), raise, or execute the response.

The inputs are drawn, with a fixed seed, from the kinds of failure verifiers have had: prose after a number
(the unit pattern that once backtracked exponentially), intervals and inequalities, answer sets and many
boxes, equations around the answer, answers outside a box and across lines, letters, deep nesting, huge and
nested numbers, long prose, 1 MB strings, injected code and random LaTeX. Inline calls are what `rlvr verify`
and the dataset builder's synthesis vote make, so the verifiers must be safe without the pool's limits.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.test_verifier_fuzz import LATEX_TOKENS, injections
from verifiers import STATUSES, get_verifier

N_INPUTS = 10_000
LIMIT_S = 1.0
HARD_STOP_S = 10.0
MAX_LATE_FRACTION = 0.001  # calls under 1 s of CPU but over 1 s of wall time (descheduled on a busy machine)
WORDS = (
    "dollars",
    "is",
    "what",
    "she",
    "makes",
    "every",
    "day",
    "at",
    "the",
    "market",
    "and",
    "apples",
    "left",
)
REFERENCES = {
    "math": ["18", "\\frac{1}{2}", "(-\\infty, 3)", "3, 5, 7", "(3,2)", "x^2+1", "[2,\\infty)", "28\\%"],
    "numeric": ["18", "0.5", "1,000", "-3"],
    "exact": ["18", "Paris", "x=3"],
    "choice": ["A", "D", "B"],
}
VERIFIERS = {name: get_verifier(name, max_response_chars=2_000_000) for name in REFERENCES}


def _prose(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _number(rng: random.Random) -> str:
    return str(rng.choice([18, 7, 0, -3, 1331, 12.5, 10**30]))


def _interval(rng: random.Random) -> str:
    a, b = sorted(rng.sample(range(-20, 20), 2))
    shapes = [
        f"x<{b}",
        f"{a} < x < {b}",
        f"x \\ge {a}",
        f"({a}, {b})",
        f"[{a}, \\infty)",
        f"{b} > x \\geq {a}",
    ]
    return rng.choice(shapes) + rng.choice(["", "<" * rng.randint(0, 50), " \\le x" * rng.randint(0, 30)])


GENERATORS: list[Callable[[random.Random], str]] = [
    lambda r: f"The final answer is $\\boxed{{{_number(r)} {_prose(r, r.randint(1, 1500))}!}}$.",
    lambda r: f"#### {_number(r)} {_prose(r, r.randint(1, 1500))}{r.choice(['!', '.', '?', ''])}",
    lambda r: f"So the answer is $\\boxed{{{_interval(r)}}}$",
    lambda r: " and ".join(f"\\boxed{{{r.randint(0, 9)}}}" for _ in range(r.randint(1, 3000))),
    lambda r: "\\boxed{" + " = ".join(_number(r) for _ in range(r.randint(1, 2000))) + "}",
    lambda r: "\\boxed{" + ", ".join(f"x_{i}={i}" for i in range(r.randint(1, 2000))) + "}",
    lambda r: r.choice(["Answer $", "Answer \\(", "Answer \\[", "Final Answer:"]) + "\n" * r.randint(0, 5000),
    lambda r: "The answer is 42." + " Let me check." * r.randint(100, 3000),
    lambda r: "Answer: " + r.choice("ABCDa") + "\nWhy? The answer is a " + _prose(r, r.randint(1, 2000)),
    lambda r: (
        r.choice(["{", "\\frac{", "(", "\\sqrt{", "\\boxed{", "\\text{", "[", "^{", "$"])
        * r.randint(1, 6_000)
    ),
    lambda r: "\\boxed{" + "(" * (n := r.randint(1, 5000)) + "1" + ")" * n + "}",
    lambda r: "\\boxed{" + "9" * r.randint(1, 50_000) + "}",
    lambda r: "\\boxed{" + "(" * 3 + f"10^{{{r.randint(1, 99999)}}}" + ")^{9999}" * 3 + "}",
    lambda r: "\\boxed{" + "^".join(str(r.randint(2, 99)) for _ in range(r.randint(2, 40))) + "}",
    lambda r: (
        f"\\boxed{{{r.randint(1000, 10**9)}!}} or \\boxed{{\\binom{{{r.randint(10**5, 10**9)}}}{{99}}}}"
    ),
    lambda r: f"\\boxed{{{_number(r)}}}" + " " + _prose(r, r.randint(1000, 4000)),
    lambda r: "".join(r.choice(LATEX_TOKENS) for _ in range(r.randint(1, 400))),
    lambda r: (
        r.choice(["1", "a", " ", "\n", "answer is ", "\\boxed{1}", "Therefore x is "]) * r.randint(1, 4_000)
    ),
]


class _Stalled(BaseException):
    pass


@contextmanager
def _hard_stop(seconds: float) -> Iterator[None]:
    """Interrupts a stalled call from a timer thread (SIGUSR1), leaving SIGALRM to the verifier's limit."""

    def stop(signum: int, frame: object) -> None:
        raise _Stalled

    previous = signal.signal(signal.SIGUSR1, stop)
    timer = threading.Timer(seconds, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)


def inputs(sentinel: Path) -> list[str]:
    rng = random.Random(12)
    attacks = injections(sentinel)
    found = [
        rng.choice(attacks) if i % 50 == 0 else GENERATORS[i % len(GENERATORS)](rng) for i in range(N_INPUTS)
    ]
    big = [
        "\\boxed{" + "x" * 1_000_000 + "}",
        "0." + "1" * 1_000_000,
        "answer is " * 100_000,
        "{" * 1_000_000,
    ]
    return found[: N_INPUTS - len(big)] + big


def _cpu_seconds(verifier: Any, text: str, reference: str) -> float:
    cpu = time.thread_time()
    try:
        with _hard_stop(HARD_STOP_S):
            verifier.verify(text, reference)
    except _Stalled:
        return HARD_STOP_S
    return time.thread_time() - cpu


@pytest.mark.slow
def test_ten_thousand_adversarial_inputs_inline(tmp_path: Path) -> None:
    sentinel = tmp_path / "SENTINEL"
    slow, late, raised, calls = [], [], [], 0
    for i, text in enumerate(inputs(sentinel)):
        for name, verifier in VERIFIERS.items():
            reference = REFERENCES[name][i % len(REFERENCES[name])]
            started, cpu = time.monotonic(), time.thread_time()
            try:
                with _hard_stop(HARD_STOP_S):
                    result = verifier.verify(text, reference)
            except _Stalled:
                slow.append((name, text[:80], HARD_STOP_S))
                continue
            except Exception as exc:  # a built-in must handle any text
                raised.append((name, text[:80], repr(exc)[:200]))
                continue
            elapsed, cpu = time.monotonic() - started, time.thread_time() - cpu
            calls += 1
            assert result.status in STATUSES
            if cpu >= LIMIT_S:  # measured once more: a genuinely slow input is slow twice, a stall once
                cpu = min(cpu, _cpu_seconds(verifier, text, reference))
            if cpu >= LIMIT_S:
                slow.append((name, text[:80], round(cpu, 2)))
            elif elapsed >= LIMIT_S:
                late.append((name, text[:80], round(elapsed, 2)))
    assert not raised, raised[:5]
    assert not slow, slow[:5]  # over 1 s of CPU, or stopped at the hard limit
    # Wall time: a loaded shared machine can deschedule a call that needs milliseconds of CPU.
    assert len(late) <= calls * MAX_LATE_FRACTION, late[:5]
    assert not sentinel.exists(), "a verifier executed model output"
    assert calls == N_INPUTS * len(VERIFIERS)
