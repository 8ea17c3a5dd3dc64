"""The current model on Ray for the dataset builder, behind the same `Sampler` training uses: a
`RolloutWorker` samples completions (stage 5 writes and solves new problems with it) and a `VerifierWorker`
scores them with each row's own verifier (stage 6: pass@k)."""

from __future__ import annotations

import time
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
        # vLLM sizes its KV cache for the context it may see: the prompts it is given and the response cap
        options = {"max_model_len": d.max_prompt_tokens + d.max_new_tokens} if d.engine == "vllm" else None
        self.worker = start_rollout_worker(
            d.engine,
            model.config,
            model.state_dict(),
            tokenizer.stop_token_ids,
            tokenizer.pad_token_id,
            options=options,
        )
        self.verifier = start_verifier_worker(VerifierConfig(processes=1))
        # pass@k sees the prompts as training will; synthesis prompts carry their own instructions
        self.sampler = Sampler(PromptFormat(tokenizer, d.prompt), self._generate, self._verify)
        plain = d.prompt.model_copy(update={"instruction": None, "instructions": {}})
        self.writer = Sampler(PromptFormat(tokenizer, plain), self._generate, self._verify)
        self.k, self.max_new_tokens, self.seed = d.k, d.max_new_tokens, seed
        self.max_prompt_tokens, self.calls = d.max_prompt_tokens, 0

    def _generate(self, *args: Any) -> Any:
        return ray.get(self.worker.generate.remote(*args))

    def _verify(self, items: list[Any], specs: list[str | None]) -> Any:
        return ray.get(self.verifier.verify_batch.remote(items, specs))

    def _seeds(self, purpose: str, count: int) -> list[int]:
        self.calls += 1
        return prompt_seeds(self.seed, purpose, self.calls, count)

    def sample(self, texts: list[str], n: int) -> list[list[str]]:
        """n completions per text; none for a text over `max_prompt_tokens` (counted as nothing written)."""
        rows = [PromptRow(id=str(i), prompt=t, answer="") for i, t in enumerate(texts)]
        fits = self._fitting(self.writer, rows)
        settings = SamplingSettings(n, self.max_new_tokens)
        seeds = self._seeds("synthesis", len(rows))
        chosen = [rows[i] for i in fits]
        rollouts = self.writer.generate(chosen, settings, [seeds[i] for i in fits]) if fits else []
        out: list[list[str]] = [[] for _ in texts]
        for r in rollouts:
            out[fits[r.prompt_index]].append(self.writer.tokenizer.decode(r.response_ids))
        return out

    def solve(self, rows: list[PromptRow], stop: StopFn | None = None) -> list[dict[str, Any]]:
        """Per row: {solved, attempts, tokens}, and `skipped` for a prompt over max_prompt_tokens. Without
        `stop`, all k attempts in one call; with it, one attempt per round, and a row leaves once
        `stop(right, wrong)` says its class is known. Attempt a of a row has its own seed whichever rows are
        still sampling (a rerun repeats it); it is a different draw from the same distribution as sample a
        of the one-call mode."""
        seeds = self._seeds("difficulty", len(rows))
        out: list[dict[str, Any]] = [{"solved": 0, "attempts": 0, "tokens": 0} for _ in rows]
        # a prompt longer than training takes is not sampled (training would skip it: data.max_prompt_tokens)
        fits = self._fitting(self.sampler, rows)
        for i in set(range(len(rows))) - set(fits):
            out[i]["skipped"] = "prompt_too_long"
        if stop is None:
            self._tally([rows[i] for i in fits], fits, self.k, [seeds[i] for i in fits], out)
            return out
        active = fits
        for attempt in range(self.k):
            if not active:
                break
            round_seeds = [derive_seed(seeds[i], "difficulty", attempt) for i in active]
            began = time.perf_counter()
            self._tally([rows[i] for i in active], active, 1, round_seeds, out)
            print(
                f"difficulty: attempt {attempt + 1}/{self.k} on {len(active)} prompts in "
                f"{time.perf_counter() - began:.0f} s; {sum(1 for o in out if o['solved'])} solved so far",
                flush=True,
            )
            active = [i for i in active if not stop(out[i]["solved"], out[i]["attempts"] - out[i]["solved"])]
        return out

    def _fitting(self, sampler: Sampler, rows: list[PromptRow]) -> list[int]:
        """Indices of the rows whose prompt, as the model sees it, is at most max_prompt_tokens long."""
        return [i for i, row in enumerate(rows) if len(sampler.prompt_ids(row)) <= self.max_prompt_tokens]

    def _tally(
        self, rows: list[PromptRow], index: list[int], n: int, seeds: list[int], out: list[dict[str, Any]]
    ) -> None:
        """n attempts at each of `rows` (row j is out[index[j]]): right ones, attempts, response tokens."""
        if not rows:
            return
        for s in self.sampler.sample(rows, SamplingSettings(n, self.max_new_tokens), seeds):
            record = out[index[s.rollout.prompt_index]]
            record["solved"] += int(s.result.correct)
            record["attempts"] += 1
            record["tokens"] += len(s.rollout.response_ids)
