"""The current model on Ray for the dataset builder, behind the same `Sampler` training uses: a
`RolloutWorker` samples completions (stage 5 writes and solves new problems with it) and a `VerifierWorker`
scores them with each row's own verifier (stage 6: pass@k)."""

from __future__ import annotations

from typing import Any

import ray
import torch

from rlvr.actors import start_rollout_worker, start_verifier_worker
from rlvr.cluster import ensure_ray
from rlvr.config import VerifierConfig
from rlvr.data.difficulty import StopFn
from rlvr.data.schema import PromptRow
from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rlvr.sampler import PromptFormat, Sampler, SamplingSettings
from rlvr.seeds import derive_seed, prompt_seeds
from rlvr.tokenizer import load_tokenizer


class RayModel:
    """`sample(texts, n)`: n completions per text at temperature 1.0. `solve(rows, stop)`: how many of k
    samples each row's verifier accepts (the difficulty stage), optionally stopping a row early."""

    def __init__(self, d: Any, seed: int = 0) -> None:
        if not (d.model or d.preset):
            raise ValueError("difficulty needs `model` (a checkpoint folder), `preset`, or `pass_table`")
        ensure_ray(2)
        if d.model:
            model = Megrez2ForCausalLM.from_pretrained(d.model)
        else:
            torch.manual_seed(derive_seed(seed, "init"))
            model = Megrez2ForCausalLM(Megrez2Config.preset(d.preset))
        tokenizer = load_tokenizer(d.model)
        self.worker = start_rollout_worker(
            d.engine, model.config, model.state_dict(), tokenizer.stop_token_ids, tokenizer.pad_token_id
        )
        self.verifier = start_verifier_worker(VerifierConfig(processes=1))
        # pass@k sees the prompts as training will; synthesis prompts carry their own instructions
        self.sampler = Sampler(PromptFormat(tokenizer, d.prompt), self._generate, self._verify)
        plain = d.prompt.model_copy(update={"instruction": None, "instructions": {}})
        self.writer = Sampler(PromptFormat(tokenizer, plain), self._generate, self._verify)
        self.k, self.max_new_tokens, self.seed = d.k, d.max_new_tokens, seed
        self.calls = 0

    def _generate(self, *args: Any) -> Any:
        return ray.get(self.worker.generate.remote(*args))

    def _verify(self, items: list[Any], specs: list[str | None]) -> Any:
        return ray.get(self.verifier.verify_batch.remote(items, specs))

    def _seeds(self, purpose: str, count: int) -> list[int]:
        self.calls += 1
        return prompt_seeds(self.seed, purpose, self.calls, count)

    def sample(self, texts: list[str], n: int) -> list[list[str]]:
        rows = [PromptRow(id=str(i), prompt=t, answer="") for i, t in enumerate(texts)]
        settings = SamplingSettings(n, self.max_new_tokens)
        rollouts = self.writer.generate(rows, settings, self._seeds("synthesis", len(rows)))
        out: list[list[str]] = [[] for _ in texts]
        for r in rollouts:
            out[r.prompt_index].append(self.writer.tokenizer.decode(r.response_ids))
        return out

    def solve(self, rows: list[PromptRow], stop: StopFn | None = None) -> list[dict[str, int]]:
        """Per row: {solved, attempts, tokens}. Without `stop`, all k attempts in one call; with it, one
        attempt per round, and a row leaves once `stop(right, wrong)` says its class is known. Attempt a of
        a row has its own seed whichever rows are still sampling (a rerun repeats it); it is a different
        draw from the same distribution as sample a of the one-call mode."""
        seeds = self._seeds("difficulty", len(rows))
        out = [{"solved": 0, "attempts": 0, "tokens": 0} for _ in rows]
        if stop is None:
            self._tally(rows, list(range(len(rows))), self.k, seeds, out)
            return out
        active = list(range(len(rows)))
        for attempt in range(self.k):
            round_seeds = [derive_seed(seeds[i], "difficulty", attempt) for i in active]
            self._tally([rows[i] for i in active], active, 1, round_seeds, out)
            active = [i for i in active if not stop(out[i]["solved"], out[i]["attempts"] - out[i]["solved"])]
            if not active:
                break
        return out

    def _tally(
        self, rows: list[PromptRow], index: list[int], n: int, seeds: list[int], out: list[dict[str, int]]
    ) -> None:
        """n attempts at each of `rows` (row j is out[index[j]]): right ones, attempts, response tokens."""
        for s in self.sampler.sample(rows, SamplingSettings(n, self.max_new_tokens), seeds):
            record = out[index[s.rollout.prompt_index]]
            record["solved"] += int(s.result.correct)
            record["attempts"] += 1
            record["tokens"] += len(s.rollout.response_ids)
