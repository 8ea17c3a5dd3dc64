"""The verifier contract: a `Verifier` turns (response, reference) into a `Result` with a binary reward."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, TypeVar

from verifiers.extract import final_section

Status = Literal["ok", "wrong", "no_answer", "parse_error", "timeout", "error"]
STATUSES: tuple[Status, ...] = ("ok", "wrong", "no_answer", "parse_error", "timeout", "error")


@dataclass(frozen=True, slots=True)
class Result:
    """One verification.

    `status` says why: "ok" (correct), "wrong" (an answer was found and differs), "no_answer" (nothing to
    extract, or the response is over the length cap), "parse_error" (an answer was found but could not be
    read), "timeout" (over the pool's soft limit) and "error" (the verifier raised or its worker died).
    """

    correct: bool
    reward: float
    status: Status
    extracted: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Verifier:
    """Base class for verifiers. Subclasses implement `check` and inherit reward shaping and the length cap.

    `check(response, reference, sample)` returns `(status, extracted, detail)`; `verify` wraps it into a
    `Result` whose reward is `reward_correct` for status "ok" and `reward_wrong` for every other status.

    A verifier that sets `reads_final_section` (every built-in does) is handed only the final section of a
    reasoning model's response (`verifiers.extract.final_section`: the last `<answer>` block, else the text
    after the last `</think>`), and a response cut off inside `<think>` is "no_answer": a draft answer in the
    thinking never scores. Off by default, so that a verifier of the format itself sees the tags.
    """

    name: ClassVar[str] = "verifier"
    reads_final_section: ClassVar[bool] = False

    def __init__(
        self, *, reward_correct: float = 1.0, reward_wrong: float = -1.0, max_response_chars: int = 20_000
    ) -> None:
        self.reward_correct = float(reward_correct)
        self.reward_wrong = float(reward_wrong)
        self.max_response_chars = int(max_response_chars)

    def verify(self, response: str, reference: str, sample: Mapping[str, Any] | None = None) -> Result:
        if not isinstance(response, str) or len(response) > self.max_response_chars:
            return self.result("no_answer", None, "response missing or over the length cap")
        if self.reads_final_section:
            section = final_section(response)
            if section is None:
                return self.result("no_answer", None, "the response stops inside <think>: no final answer")
            response = section
        status, extracted, detail = self.check(response, str(reference), sample)
        return self.result(status, extracted, detail)

    def check(
        self, response: str, reference: str, sample: Mapping[str, Any] | None
    ) -> tuple[Status, str | None, str | None]:
        raise NotImplementedError

    def result(self, status: Status, extracted: str | None = None, detail: str | None = None) -> Result:
        ok = status == "ok"
        return Result(ok, self.reward_correct if ok else self.reward_wrong, status, extracted, detail)


F = TypeVar("F", bound=Callable[..., Any])
_REGISTRY: dict[
    str, Callable[..., Any]
] = {}  # name -> verifier class or factory (`verifiers.registry` reads it)


def register_verifier(name: str) -> Callable[[F], F]:
    """Class or factory decorator: `@register_verifier("name")`. Names are unique."""

    def add(factory: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"verifier name {name!r} is already registered by {_REGISTRY[name]!r}")
        _REGISTRY[name] = factory
        return factory

    return add
