"""Hostile model output through VerifierPool with the real "math" and "numeric" verifiers.

Whatever the response, the pool must answer every item with a valid status within the hard-limit bound,
keep working, and never execute the response: code injected into \\boxed{} must not create the sentinel.
The "math-uncapped" pool lifts the 20,000-character response cap, so that 1 MB answers and 10,000 nested
braces reach the extractor and the parser instead of stopping at the length check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifiers import STATUSES, Result, VerifierPool

SOFT_S = 1.0
HARD_S = 3.0
NUM_WORKERS = 2
SLACK_S = 5.0
MATH_REFERENCES = ["0.5", "\\frac{1}{2}", "12", "-3", "x^2+1", "\\sqrt{2}", "B", "1,000", "[1,2)", "y=2x+1"]
NUMERIC_REFERENCES = ["0.5", "\\frac{1}{2}", "12", "-3", "1,000", "$1,234.50"]
POOLS = {  # id -> (verifier, verifier_kwargs, references to compare with)
    "math": ("math", {}, MATH_REFERENCES),
    "math-uncapped": ("math", {"max_response_chars": 4_000_000}, MATH_REFERENCES),
    "numeric": ("numeric", {}, NUMERIC_REFERENCES),
}
LATEX_TOKENS = [
    "\\boxed{", "}", "{", "\\frac{", "}{", "\\sqrt{", "^{", "_{", "\\left(", "\\right)", "\\infty", "\\pi",
    "\\int_0^1", "\\sum_{i=1}^{\\infty}", "\\cdot", "\\times", "=", "\\pm", "$", "$$", "\\\\", "\\text{",
    "\\begin{pmatrix}", "&", "\\end{pmatrix}", "e^{", "\\ln(", "\\sin(", "0.", "1", "9", "-", "/", "%", ",",
    "\\,", "\\!", "\\mathrm{", "\\%", "10^{10^{10}}", "!", "'", '"', "\x00", "\udcff", "\ud800", "\\boxed{}",
]  # fmt: skip


def injections(sentinel: Path) -> list[str]:
    """Code that creates `sentinel` if anything eval()s, exec()s or sympify()s the answer."""
    return [
        f"\\boxed{{__import__('os').system('touch {sentinel}')}}",
        f"\\boxed{{open('{sentinel}','w')}}",
        f"\\boxed{{exec(\"open('{sentinel}','w').write('x')\")}}",
        f"The answer is $\\boxed{{eval(\"__import__('pathlib').Path('{sentinel}').touch()\")}}$",
        f"\\boxed{{[c for c in ().__class__.__base__.__subclasses__()]; open('{sentinel}', 'w')}}",
        f"\\boxed{{__import__('subprocess').run(['touch', '{sentinel}'])}}",
        f"{{__import__('os').system('touch {sentinel}')}} = \\boxed{{1}}",
        f"\\boxed{{\\text{{__import__('os').system('touch {sentinel}')}}}}",
        f"\\boxed{{\\mathrm{{eval}}(\"open('{sentinel}','w')\")}}",
        f"\\boxed{{\\operatorname{{exec}}(\"open('{sentinel}','w')\")}}",
        f"$\\fbox{{lambda: __import__('os').system('touch {sentinel}')}}$",
        f"The answer is __import__('os').system('touch {sentinel}')",
        f"#### __import__('os').system('touch {sentinel}')",
        f"\\boxed{{x}} where x = __import__('os').system('touch {sentinel}') \\boxed{{Symbol('{sentinel}')}}",
    ]


def known_attacks(sentinel: Path) -> list[str]:
    return injections(sentinel) + [
        "\\boxed{10^{10^{10}}}",
        "\\boxed{2^{2^{2^{100}}}}",
        "\\boxed{9^{9^{9^{9}}}} \\boxed{9**9**9**9}",
        "\\boxed{" + "9" * 19_000 + "}",
        "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
        "\\boxed{" + "(" * 5_000 + "1" + ")" * 5_000 + "}",
        "\\boxed{" + "\\frac{1}{" * 2_000 + "2" + "}" * 2_000 + "}",
        "\\boxed{" + "x" * 1_000_000 + "}",
        "\\boxed{" + "9" * 1_000_000 + "}",
        "0." + "1" * 1_000_000,
        "\\boxed{1" + "^1" * 5_000 + "}",
        b"\xff\xfe\\boxed{0.5}".decode("utf-8", "surrogateescape"),  # invalid UTF-8, as Python reads it
        "\\boxed{\ud83d\ude00}\\boxed{\ufffe\U0010ffff}",
        "\\boxed{1}" * 100_000,
        "\\boxed{\udcff}\ud800 and \\boxed{0.5\udcff}",
        "\\boxed{0.5}\x00\x00\\boxed{\x00}",
        "\\boxed{\\frac{1}{0}} \\boxed{0/0}",
        "\\boxed{\\int_0^\\infty e^{-x^2} dx}",
        "\\boxed{" + "\\sqrt{" * 500 + "2" + "}" * 500 + "}",
        "",
    ]


@dataclass
class Target:
    pool: VerifierPool
    references: list[str]


@pytest.fixture(scope="module", params=list(POOLS))
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    verifier, kwargs, references = POOLS[request.param]
    with VerifierPool(verifier, NUM_WORKERS, SOFT_S, HARD_S, verifier_kwargs=kwargs) as pool:
        yield Target(pool, references)


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "SENTINEL"


def batch_bound_s(batch_size: int) -> float:
    # Each stuck item holds one worker for at most the hard limit; items queue behind it per worker.
    return HARD_S * math.ceil(batch_size / NUM_WORKERS) + SLACK_S


def check_batch(pool: VerifierPool, items: list[tuple[Any, str]], sentinel: Path) -> list[Result]:
    answered_before = sum(pool.status_counts.values())
    started = time.monotonic()
    results = pool.verify_batch(items)
    assert time.monotonic() - started < batch_bound_s(len(items))
    assert len(results) == len(items)
    for result in results:
        assert isinstance(result, Result) and result.status in STATUSES
        assert result.correct == (result.status == "ok")
        assert math.isfinite(result.reward)
        # "error" means the verifier raised or its worker died: a built-in must handle any text.
        assert result.status != "error", result.detail
    assert sum(pool.status_counts.values()) == answered_before + len(items)
    assert not sentinel.exists(), "the verifier executed model output"
    return results


@pytest.mark.slow
def test_known_attacks_are_answered_and_never_executed(target: Target, sentinel: Path) -> None:
    attacks: list[Any] = known_attacks(sentinel)
    items = [(attack, reference) for attack in attacks for reference in target.references]
    items += [(b"\\boxed{1}", "1"), (None, "1"), (12, "12")]  # not text at all
    results = check_batch(target.pool, items, sentinel)
    injected = len(injections(sentinel)) * len(target.references)
    assert all(result.status != "ok" for result in results[:injected])
    assert [result.status for result in results[-3:]] == ["no_answer"] * 3
    # The pool survives: a plain answer afterwards is still verified normally.
    assert target.pool.verify("so \\boxed{12}", "12").status == "ok"


def hostile_response(sentinel: Path) -> st.SearchStrategy[str]:
    fragment = st.one_of(
        st.sampled_from(LATEX_TOKENS),
        st.text(max_size=12),
        st.binary(max_size=16).map(lambda raw: raw.decode("utf-8", "surrogateescape")),
        st.sampled_from(injections(sentinel)),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.builds(
            lambda token, n: token * n,
            st.sampled_from(["{", "}", "\\frac{", "^{", "("]),
            st.integers(0, 3000),
        ),
    )
    return st.lists(fragment, max_size=30).map("".join)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_hostile_batches(target: Target, sentinel: Path, data: st.DataObject) -> None:
    responses = data.draw(st.lists(hostile_response(sentinel), min_size=1, max_size=6), label="responses")
    references = data.draw(
        st.lists(st.sampled_from(target.references), min_size=len(responses), max_size=len(responses)),
        label="references",
    )
    check_batch(target.pool, list(zip(responses, references, strict=True)), sentinel)
