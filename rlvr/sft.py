"""`rlvr sft`: supervised warm start on worked solutions, before RL.

Each example is the prompt followed by its worked solution (`meta["solution"]`, else the answer) and EOS;
the loss is the token mean of −log p over the solution tokens only. The result is a checkpoint in the official
layout, plus the tokenizer, that a recipe's `model.path` (or `rlvr train`'s automatic warm start) starts from.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from rlvr.config import RecipeConfig
from rlvr.data.schema import PromptRow, read_prompt_file
from rlvr.model.megrez2 import Megrez2ForCausalLM, token_logprobs
from rlvr.tokenizer import CharTokenizer, HFTokenizer, load_tokenizer


def sft_dir(recipe: RecipeConfig) -> Path:
    return recipe.run.dir / "sft"


def example(tokenizer: CharTokenizer | HFTokenizer, row: PromptRow) -> tuple[list[int], int]:
    """Token ids of prompt + solution + EOS, and where the solution starts."""
    prompt = tokenizer.encode(row.prompt)
    solution = tokenizer.encode(str(row.meta.get("solution", row.answer)), add_bos=False)
    return prompt + solution + [tokenizer.eos_token_id], len(prompt)


def collate(
    examples: list[tuple[list[int], int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, and the loss mask over targets (solution tokens and EOS)."""
    length = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    attention = torch.zeros(len(examples), length, dtype=torch.long)
    loss_mask = torch.zeros(len(examples), length - 1)
    for i, (row, start) in enumerate(examples):
        ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        loss_mask[i, start - 1 : len(row) - 1] = 1
    return ids, attention, loss_mask


def run_sft(recipe: RecipeConfig, log: bool = True) -> Path:
    """Trains `recipe.model` from scratch (or `model.path`) on `recipe.sft.data`; returns the checkpoint."""
    from rlvr.trainer import model_config_for

    cfg = recipe.sft
    out = sft_dir(recipe)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(recipe.model.tokenizer or recipe.model.path)
    source = read_prompt_file(cfg.data)
    for problem in source.problems:
        print(f"warning: {cfg.data}: malformed {problem}")
    examples = [example(tokenizer, row) for row in source.rows]
    torch.manual_seed(recipe.run.seed)
    model = (
        Megrez2ForCausalLM.from_pretrained(recipe.model.path)
        if recipe.model.path
        else Megrez2ForCausalLM(model_config_for(recipe))
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1)) * max(0.1, 1 - s / cfg.steps)
    )
    rng = random.Random(recipe.run.seed)
    metrics_path = out / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    start = time.perf_counter()
    model.train()
    for step in range(1, cfg.steps + 1):
        ids, attention, loss_mask = collate(rng.sample(examples, cfg.batch_size), tokenizer.pad_token_id)
        logp = token_logprobs(model(ids, attention_mask=attention).logits[:, :-1], ids[:, 1:])
        loss = -(logp * loss_mask).sum() / loss_mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % cfg.log_every == 0 or step == cfg.steps:
            row = {"step": step, "loss": float(loss.detach()), "lr": schedule.get_last_lr()[0]}
            row["time_s"] = time.perf_counter() - start
            with metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            if log:
                print(f"sft step {step:>5}  loss {row['loss']:.4f}  {row['time_s']:.0f}s", flush=True)
    model.save_pretrained(out)
    if isinstance(tokenizer, CharTokenizer):
        tokenizer.save(out)
    (out / "sft_done.json").write_text(json.dumps({"steps": cfg.steps, "data": cfg.data}))
    return out
