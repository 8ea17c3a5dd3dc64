"""`Sampler`: prompt rows → token ids → n sampled responses → decoded text → verified rewards.

The one path from prompts to rewards, used by training, `rlvr eval` and the dataset builder's difficulty and
synthesis stages, so all of them see the same prompt text, the same decoding and the same verifier per row.
The engines and verifiers behind it are plain callables (Ray actors in training, in-process in `rlvr eval`).

A verifier that returns a NaN or infinite reward is untrusted output like any other: the result becomes
status `error` with the wrong-answer reward, so one bad plug-in cannot turn a group's advantages into NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from rlvr.config import PromptConfig
from rlvr.data.schema import PromptRow
from rollout.types import Rollout
from verifiers.base import Result

Item = tuple[str, str, dict[str, Any] | None]  # (response text, gold answer, sample meta)
# prompts, n, max_new_tokens, temperature, per-prompt seeds, top_p -> rollouts (prompt-major)
GenerateFn = Callable[[list[list[int]], int, int, float, Sequence[int] | None, float], list[Rollout]]
VerifyFn = Callable[[list[Item], list[str | None]], list[Result]]


class Tokenizer(Protocol):
    def encode(self, text: str, add_bos: bool = True) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class PromptFormat:
    """How a prompt row becomes the token ids the engine sees: the one place this happens, so training, SFT,
    `rlvr eval` and the builder's difficulty stage see the same text.

    text = row.prompt, then the instruction (the row's source's, else `instruction`) on a new line; with
    `template: chat` it is the user turn of the tokenizer's chat template (after `system_prompt`, if any),
    ending with the generation prompt. ValueError when `chat` is asked of a tokenizer without a template."""

    def __init__(self, tokenizer: Tokenizer, config: PromptConfig | None = None) -> None:
        self.tokenizer, self.config = tokenizer, config or PromptConfig()
        if self.config.template == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "data.prompt.template is 'chat' but the tokenizer has no chat template: use template 'raw' "
                "or a tokenizer folder whose tokenizer_config.json has one"
            )

    def text(self, row: PromptRow) -> str:
        """The prompt with its instruction (before any chat template)."""
        instruction = self.config.instructions.get(row.source, self.config.instruction)
        return f"{row.prompt}\n{instruction}" if instruction else row.prompt

    def ids(self, row: PromptRow) -> list[int]:
        text, system = self.text(row), self.config.system_prompt
        if self.config.template == "raw":  # (a system prompt without the chat template is refused at load)
            return self.tokenizer.encode(text)
        turns = [{"role": "system", "content": system}] if system else []
        return self.tokenizer.chat_ids([*turns, {"role": "user", "content": text}])  # type: ignore[attr-defined]


@dataclass
class ScoredRollout:
    """One sampled response to one prompt row, decoded and verified."""

    row: PromptRow
    rollout: Rollout
    text: str  # the response as the verifier saw it (decoded, special tokens removed)
    result: Result
    verifier: str  # the spec that checked it: the row's, else the default

    @property
    def reward(self) -> float:
        return self.result.reward


@dataclass(frozen=True)
class SamplingSettings:
    """How responses are drawn: `rollout.*` for training, the same keys for eval and the builder."""

    n: int
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0


class Sampler:
    """generate → decode → verify over prompt rows; each row is checked by its own verifier (the row's
    `verifier`, else `default_verifier`)."""

    def __init__(
        self,
        prompt_format: PromptFormat | Tokenizer,
        generate: GenerateFn,
        verify: VerifyFn,
        default_verifier: str = "math",
        reward_wrong: float = -1.0,
    ) -> None:
        if not isinstance(prompt_format, PromptFormat):
            prompt_format = PromptFormat(prompt_format)
        self.format, self.tokenizer = prompt_format, prompt_format.tokenizer
        self._generate, self._verify = generate, verify
        self.default_verifier, self.reward_wrong = default_verifier, reward_wrong

    def prompt_ids(self, row: PromptRow) -> list[int]:
        """The token ids the engine is given for `row`."""
        return self.format.ids(row)

    def generate(
        self, rows: Sequence[PromptRow], settings: SamplingSettings, seeds: Sequence[int] | None
    ) -> list[Rollout]:
        """settings.n rollouts per row, prompt-major; rollout.prompt_index indexes `rows`."""
        s = settings
        prompts = [self.prompt_ids(row) for row in rows]
        return self._generate(prompts, s.n, s.max_new_tokens, s.temperature, seeds, s.top_p)

    def score(self, rows: Sequence[PromptRow], rollouts: Sequence[Rollout]) -> list[ScoredRollout]:
        """Decodes and verifies each rollout against its row's gold with its row's verifier."""
        texts = [self.tokenizer.decode(r.response_ids) for r in rollouts]
        owners = [rows[r.prompt_index] for r in rollouts]
        items: list[Item] = [(text, row.answer, row.meta) for text, row in zip(texts, owners, strict=True)]
        specs = [row.verifier_or(self.default_verifier) for row in owners]
        results = self._verify(items, specs)
        return [
            ScoredRollout(row, rollout, text, self._finite(result), spec)
            for row, rollout, text, result, spec in zip(owners, rollouts, texts, results, specs, strict=True)
        ]

    def sample(
        self, rows: Sequence[PromptRow], settings: SamplingSettings, seeds: Sequence[int] | None
    ) -> list[ScoredRollout]:
        return self.score(rows, self.generate(rows, settings, seeds))

    def _finite(self, result: Result) -> Result:
        if math.isfinite(result.reward):
            return result
        detail = f"non-finite reward {result.reward!r} from the verifier; scored as wrong"
        return replace(result, correct=False, reward=self.reward_wrong, status="error", detail=detail)


def verifier_metrics(scored: Sequence[ScoredRollout]) -> dict[str, float]:
    """Per verifier spec: how many responses it checked and the fraction correct."""
    by_spec: dict[str, list[bool]] = {}
    for s in scored:
        by_spec.setdefault(s.verifier, []).append(s.result.correct)
    out: dict[str, float] = {}
    for spec, correct in sorted(by_spec.items()):
        name = "".join(c if c.isalnum() else "_" for c in spec)  # metric keys: letters, digits, _
        out[f"verifier_{name}_count"] = len(correct)
        out[f"verifier_{name}_accuracy"] = sum(correct) / len(correct)
    return out
