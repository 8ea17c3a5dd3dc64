"""The current model on Ray for the dataset builder: a `RolloutWorker` that samples completions (stage 5
writes and solves new problems with it) and `VerifierWorker`s that score them (stage 6: pass@k)."""

from __future__ import annotations

import os
from typing import Any

import ray
import torch

from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rlvr.tokenizer import load_tokenizer
from rollout.worker import RolloutWorker
from verifiers.ray_worker import VerifierWorker


class RayModel:
    """`sample(texts, n)`: n completions per text at temperature 1.0. Called with candidate rows: how many of
    k samples the row's verifier accepts (the difficulty stage's `solve`)."""

    def __init__(self, d: Any, seed: int = 0) -> None:
        if not (d.model or d.preset):
            raise ValueError("difficulty needs `model` (a checkpoint folder), `preset`, or `pass_table`")
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS", "local"))
        if d.model:
            model = Megrez2ForCausalLM.from_pretrained(d.model)
        else:
            torch.manual_seed(seed)
            model = Megrez2ForCausalLM(Megrez2Config.preset(d.preset))
        config, state = model.config, model.state_dict()
        self.tokenizer = load_tokenizer(d.model)
        self.k, self.max_new_tokens, self.seed = d.k, d.max_new_tokens, seed
        options = {"seed": seed} if d.engine == "vllm" else {}
        self.worker = RolloutWorker.options(num_cpus=1).remote(
            d.engine, config, state, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id, options=options
        )
        self.verifiers: dict[str, Any] = {}
        self.calls = 0

    def _verifier(self, spec: str) -> Any:
        if spec not in self.verifiers:
            self.verifiers[spec] = VerifierWorker.options(num_cpus=1).remote(verifier=spec, num_workers=1)
        return self.verifiers[spec]

    def sample(self, texts: list[str], n: int) -> list[list[str]]:
        self.calls += 1
        prompts = [self.tokenizer.encode(t) for t in texts]
        seed = self.seed * 1_000_003 + self.calls
        rollouts = ray.get(self.worker.generate.remote(prompts, n, self.max_new_tokens, 1.0, seed))
        out: list[list[str]] = [[] for _ in texts]
        for r in rollouts:
            out[r.prompt_index].append(self.tokenizer.decode(r.response_ids))
        return out

    def __call__(self, rows: list[dict[str, Any]]) -> list[int]:
        texts = self.sample([r["prompt"] for r in rows], self.k)
        solved = [0] * len(rows)
        by_verifier: dict[str, list[tuple[int, tuple[str, str, None]]]] = {}
        for index, (row, samples) in enumerate(zip(rows, texts, strict=True)):
            for text in samples:
                by_verifier.setdefault(row["verifier"], []).append((index, (text, row["answer"], None)))
        for spec, items in by_verifier.items():
            results = ray.get(self._verifier(spec).verify_batch.remote([item for _, item in items]))
            for (index, _), result in zip(items, results, strict=True):
                solved[index] += int(result.correct)
        return solved
