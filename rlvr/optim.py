"""AdamW and its learning-rate schedules (RL: warm-up then constant; SFT: warm-up then cosine decay)."""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, warmup_steps: int, total_steps: int = 0, min_ratio: float = 0.1) -> float:
    """The learning rate at optimiser step `step` (0-based) as a fraction of the peak.

    Linear warm-up: (step + 1) / warmup_steps for the first `warmup_steps` steps. Then constant when
    `total_steps` is 0, else cosine decay from 1 to `min_ratio` over the remaining steps (Loshchilov & Hutter,
    SGDR, 2017): min_ratio + (1 − min_ratio) · ½(1 + cos(π · p)), p = (step − warm-up) / (total − warm-up)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if not total_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw(
    model: torch.nn.Module,
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
    warmup_steps: int,
    total_steps: int = 0,
    min_ratio: float = 0.1,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW over the model's parameters with `lr_factor`'s schedule (constant after warm-up, or cosine to
    `min_ratio` of `lr` at `total_steps`)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=tuple(betas), weight_decay=weight_decay)

    def factor(step: int) -> float:
        return lr_factor(step, warmup_steps, total_steps, min_ratio)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
