"""`rlvr sft`: supervised warm start on worked solutions, before RL, on the Learner actors.

Each example is the prompt (as the Sampler formats it) followed by its worked solution (`meta["solution"]`,
else the answer) and EOS; the loss is the token mean of −log p over the solution tokens only. It runs on the
same Learner ranks (device, FSDP, data parallelism) RL uses, with its own schedule (`Learner.start_sft`). The
result is a checkpoint in the official layout, plus the tokenizer, that a recipe's `model.path` (or
`rlvr train`'s automatic warm start) starts from.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import ray
import torch

from rlvr.actors import learner_spec, required_resources, start_learners
from rlvr.cluster import ray_session
from rlvr.config import RecipeConfig
from rlvr.data import PromptRow, load_prompts
from rlvr.learner import SFTBatch, model_config_for
from rlvr.sampler import PromptFormat
from rlvr.seeds import derive_seed
from rlvr.tokenizer import CharTokenizer, HFTokenizer, load_tokenizer


def sft_dir(recipe: RecipeConfig) -> Path:
    return recipe.run.dir / "sft"


def example(
    prompt_format: PromptFormat, tokenizer: CharTokenizer | HFTokenizer, row: PromptRow
) -> tuple[list[int], int]:
    """Token ids of prompt + solution + EOS, and where the solution starts."""
    prompt = prompt_format.ids(row)
    solution = tokenizer.encode(str(row.meta.get("solution", row.answer)), add_bos=False)
    return prompt + solution + [tokenizer.eos_token_id], len(prompt)


def collate(examples: list[tuple[list[int], int]], pad_id: int) -> SFTBatch:
    """Right-padded ids, attention mask, and the loss mask over targets (solution tokens and EOS)."""
    length = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    attention = torch.zeros(len(examples), length, dtype=torch.long)
    loss_mask = torch.zeros(len(examples), length - 1)
    for i, (row, start) in enumerate(examples):
        ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        loss_mask[i, start - 1 : len(row) - 1] = 1
    return SFTBatch(ids, attention, loss_mask)


def run_sft(recipe: RecipeConfig, log: bool = True) -> Path:
    """Trains `recipe.model` (from scratch, or from `model.path`) on `recipe.sft.data` for `sft.steps`
    steps on the recipe's learner ranks; returns the checkpoint folder (`sft_dir`)."""
    cfg = recipe.sft
    out = sft_dir(recipe)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(recipe.model.tokenizer or recipe.model.path)
    prompt_format = PromptFormat(tokenizer, recipe.data.prompt)
    examples = [example(prompt_format, tokenizer, row) for row in load_prompts([cfg.data], "sft.data")]
    rng = random.Random(derive_seed(recipe.run.seed, "sft"))
    metrics_path = out / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    with ray_session(required_resources(recipe)["CPU"]):
        learners = start_learners(recipe, learner_spec(recipe, model_config_for(recipe)))
        ray.get([lr.start_sft.remote(cfg) for lr in learners])
        start = time.perf_counter()
        for step in range(1, cfg.steps + 1):
            batch = collate(rng.sample(examples, min(cfg.batch_size, len(examples))), tokenizer.pad_token_id)
            shards = torch.arange(len(batch.input_ids)).chunk(len(learners))
            metrics = ray.get(
                [lr.sft_step.remote(batch.rows(s)) for lr, s in zip(learners, shards, strict=True)]
            )
            if step % cfg.log_every == 0 or step == cfg.steps:
                row = {"step": step, **metrics[0], "time_s": time.perf_counter() - start}
                with metrics_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                if log:
                    print(f"sft step {step:>5}  loss {row['loss']:.4f}  {row['time_s']:.0f}s", flush=True)
        ray.get([lr.save.remote(str(out)) for lr in learners])
        ray.get([lr.close.remote() for lr in learners])
        for learner in learners:
            ray.kill(learner)
    tokenizer.save(out)
    (out / "sft_done.json").write_text(json.dumps({"steps": cfg.steps, "data": cfg.data}))
    return out
