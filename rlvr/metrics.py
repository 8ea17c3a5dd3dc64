"""What a step reports: rollout statistics, phase timers, and the metrics log (JSONL, wandb, console)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlvr.sampler import ScoredRollout, verifier_metrics
from verifiers.base import STATUSES


class Timer:
    """Named phase timers: `with timer("rollout"): ...` adds `time_rollout_s` to `timer.seconds`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            key = f"time_{phase}_s"
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start

    def total(self) -> dict[str, float]:
        return {**self.seconds, "time_step_s": time.perf_counter() - self._start}


def rollout_metrics(scored: Sequence[ScoredRollout], n: int) -> dict[str, float | None]:
    """Reward, accuracy, group solve fractions, lengths, verifier statuses and per-verifier counts of one
    step's rollouts (n per prompt, prompt-major)."""
    correct = [s.result.correct for s in scored]
    solved = [sum(correct[i : i + n]) for i in range(0, len(correct), n)]
    right = [s for s in scored if s.result.correct]
    wrong = [s for s in scored if not s.result.correct]
    return {
        "reward_mean": sum(s.reward for s in scored) / len(scored),
        "accuracy": len(right) / len(scored),
        "solved_none": sum(c == 0 for c in solved) / len(solved),  # groups with no signal: all wrong ...
        "solved_all": sum(c == n for c in solved) / len(solved),  # ... or all right
        "response_len": _mean_length(scored),
        "response_len_correct": _mean_length(right),
        "response_len_wrong": _mean_length(wrong),
        "truncated": sum(s.rollout.finish_reason == "length" for s in scored) / len(scored),
        **{f"status_{st}": sum(s.result.status == st for s in scored) for st in STATUSES},
        **{f"solved_{c}_of_{n}": sum(x == c for x in solved) for c in range(n + 1)},  # groups by solve count
        **verifier_metrics(scored),
        **source_metrics(scored),
    }


def source_metrics(scored: Sequence[ScoredRollout]) -> dict[str, float]:
    """Mean reward per source of the prompts (`source_<name>_reward`)."""
    by_source: dict[str, list[float]] = {}
    for s in scored:
        by_source.setdefault(s.row.source or "unknown", []).append(s.reward)
    return {f"source_{_key(name)}_reward": sum(r) / len(r) for name, r in sorted(by_source.items())}


def _key(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _mean_length(scored: Sequence[ScoredRollout]) -> float | None:
    """None when there are none (logged as null, so curves show a gap rather than a false 0)."""
    return sum(len(s.rollout.response_ids) for s in scored) / len(scored) if scored else None


class MetricsLog:
    """One JSON line per step in `metrics.jsonl`, the same to wandb when on, and a console line."""

    def __init__(self, run_dir: Path, wandb_config: dict[str, Any] | None, run_name: str) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.wandb = None
        if wandb_config is not None:
            import wandb

            mode = os.environ.get("WANDB_MODE") or (
                "online" if os.environ.get("WANDB_API_KEY") else "offline"
            )
            self.wandb = wandb.init(
                project="rlvr",
                name=run_name,
                dir=str(run_dir),
                config=wandb_config,
                mode=mode,
                resume="allow",
            )

    def log(self, metrics: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=metrics["step"])
        print(console_line(metrics), flush=True)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def console_line(m: dict[str, Any]) -> str:
    parity = f"parity {m['parity_max_abs']:.1e}  " if "parity_max_abs" in m else ""
    kept = (
        f"groups {m['groups_kept']}/{m['groups_kept'] + m['groups_dropped']}  "
        if m.get("groups_dropped")
        else ""
    )
    update = (
        f"loss {m['loss']:+.4f}  kl {m['approx_kl']:.2e}  clip {m['clip_low'] + m['clip_high']:.3f}  "
        if "loss" in m
        else "no update (no group with signal)  "
    )
    return (
        f"step {m['step']:>4}  reward {m['reward_mean']:+.3f}  acc {m['accuracy']:.3f}  "
        f"len {m['response_len']:.1f}  {kept}{update}sync {m['time_sync_s']:.2f}s  {parity}"
        f"{m['time_step_s']:.1f}s"
    )
