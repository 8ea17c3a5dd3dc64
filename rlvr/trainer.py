"""The RLVR driver: sample → rollout → verify → advantages → update → sync → log → checkpoint.

Runs on the Ray driver (`rlvr train`, or a job from `ray job submit`); the actors do the work.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import ray
import torch

from rlvr.actors import TrainingActors
from rlvr.algorithm import group_advantages
from rlvr.config import RecipeConfig
from rlvr.data.schema import PromptRow, read_prompt_file
from rlvr.evaluate import evaluate, write_result
from rlvr.learner import make_batch
from rlvr.model.megrez2 import Megrez2Config
from rlvr.tokenizer import CharTokenizer, HFTokenizer, load_tokenizer
from rollout.types import Rollout
from verifiers.base import STATUSES, Result


class PromptSampler:
    """Walks the prompts in epochs, reshuffled per epoch from the run seed; its position is checkpointed."""

    def __init__(self, rows: list[PromptRow], seed: int, shuffle: bool) -> None:
        self.rows, self.seed, self.shuffle = rows, seed, shuffle
        self.epoch, self.position = 0, 0
        self.order = self._order()

    def _order(self) -> list[int]:
        order = list(range(len(self.rows)))
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(order)
        return order

    def next(self, count: int) -> list[PromptRow]:
        chosen = []
        while len(chosen) < count:
            if self.position == len(self.order):
                self.epoch, self.position = self.epoch + 1, 0
                self.order = self._order()
            chosen.append(self.rows[self.order[self.position]])
            self.position += 1
        return chosen

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def restore(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        self.order = self._order()


def model_config_for(recipe: RecipeConfig) -> Megrez2Config:
    if recipe.model.path:
        return Megrez2Config.from_json(Path(recipe.model.path) / "config.json")
    return Megrez2Config.preset(recipe.model.preset or "tiny")


def load_prompts(recipe: RecipeConfig) -> list[PromptRow]:
    rows = []
    for path in recipe.data.train_files:
        prompt_file = read_prompt_file(path)
        for problem in prompt_file.problems:
            print(f"warning: {path}: malformed {problem}")
        rows.extend(prompt_file.rows)
    if not rows:
        raise ValueError(f"no usable prompts in {recipe.data.train_files}")
    return rows


def warm_start(recipe: RecipeConfig) -> Path:
    """The SFT checkpoint RL starts from: `rlvr sft`'s output in the run directory, trained now if missing."""
    from rlvr.sft import run_sft, sft_dir

    done = sft_dir(recipe) / "sft_done.json"
    if done.exists() and json.loads(done.read_text()).get("steps") == recipe.sft.steps:
        print(f"warm start: {sft_dir(recipe)} (already trained)")
        return sft_dir(recipe)
    print(f"warm start: {recipe.sft.steps} SFT steps on {recipe.sft.data}")
    return run_sft(recipe)


def required_resources(recipe: RecipeConfig) -> dict[str, float]:
    """CPUs and GPUs the run's actors reserve (each learner rank and rollout worker takes one CPU)."""
    res = recipe.resources
    return {
        "CPU": res.learner_workers + recipe.rollout.workers + res.cpus_per_verifier_worker,
        "GPU": res.learner_workers * res.gpus_per_learner
        + recipe.rollout.workers * res.gpus_per_rollout_worker,
    }


def connect_ray(recipe: RecipeConfig) -> None:
    """Joins the cluster (inside a Ray job, or with RAY_ADDRESS set), else starts a private Ray big enough for
    the recipe's actors (they take turns, so a 2-core machine may run 3 of them), then checks the cluster
    can place every actor: a recipe asking for more fails here with a message instead of waiting forever."""
    need = required_resources(recipe)
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init()
        else:
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, math.ceil(need["CPU"])))
    have = ray.cluster_resources()
    short = {k: v for k, v in need.items() if v > have.get(k, 0.0)}
    if short:
        wanted = ", ".join(f"{v:g} {k}" for k, v in short.items())
        raise ValueError(
            f"the recipe's actors need {wanted} but the Ray cluster has "
            f"{', '.join(f'{have.get(k, 0.0):g} {k}' for k in short)}: lower resources.* / rollout.workers "
            "or add nodes"
        )


def latest_checkpoint(run_dir: Path) -> Path | None:
    steps = sorted(
        run_dir.glob("checkpoints/step_*/trainer_state.json"), key=lambda p: int(p.parent.name[5:])
    )
    return steps[-1].parent if steps else None


def train(recipe: RecipeConfig) -> dict[str, Any]:
    """Runs the recipe to `trainer.steps`; returns the last step's metrics."""
    run_dir = recipe.run.dir
    recipe.save(run_dir)
    if recipe.sft.steps > 0 and recipe.model.path is None:
        recipe.model.path = str(warm_start(recipe))
    tokenizer = load_tokenizer(recipe.model.tokenizer or recipe.model.path)
    rows = load_prompts(recipe)
    too_long = [r for r in rows if len(tokenizer.encode(r.prompt)) > recipe.data.max_prompt_tokens]
    if too_long:
        print(f"skipping {len(too_long)} prompts longer than data.max_prompt_tokens")
    rows = [r for r in rows if r not in too_long]
    sampler = PromptSampler(rows, recipe.run.seed, recipe.data.shuffle)
    connect_ray(recipe)
    actors = TrainingActors(recipe, model_config_for(recipe), tokenizer.eos_token_id, tokenizer.pad_token_id)
    start = 0
    resume = latest_checkpoint(run_dir) if recipe.trainer.resume == "auto" else None
    if resume is not None:
        state = json.loads((resume / "trainer_state.json").read_text())
        actors.load(str(resume))
        actors.sync_weights()
        sampler.restore(state["sampler"])
        start = state["step"]
        print(f"resumed from {resume} at step {start}")
    metrics_path = run_dir / "metrics.jsonl"
    wandb_run = _start_wandb(recipe, run_dir) if recipe.trainer.wandb else None
    n, metrics = recipe.rollout.n, {}
    eval_rows = [row for path in recipe.data.eval_files for row in read_prompt_file(path).rows]

    def held_out(step: int) -> None:
        if not eval_rows or not recipe.trainer.eval_every:
            return
        result = evaluate(
            eval_rows,
            tokenizer,
            actors.generate,
            actors.verify,
            recipe.trainer.eval_k,
            recipe.rollout.max_new_tokens,
            seed=10_000_019,
            progress=False,
        )
        write_result(result, run_dir / "eval.jsonl", step=step, time=time.time())
        k = recipe.trainer.eval_k
        print(
            f"eval step {step:>4}  pass@1 {result['pass@1']:.3f}  pass@{k} {result[f'pass@{k}']:.3f}",
            flush=True,
        )

    probe_prompts = [tokenizer.encode(r.prompt) for r in rows[: recipe.rollout.parity_prompts]]

    def parity() -> dict[str, float]:
        """Learner vs engine logprobs of the same tokens on fixed prompts, right after a weight sync."""
        if not recipe.rollout.parity_probe:
            return {}
        return actors.parity_probe(probe_prompts, recipe.rollout.max_new_tokens, 1.0, seed=7_777_777)

    try:
        if start == 0:
            held_out(0)  # the starting point: before any RL
        for step in range(start + 1, recipe.trainer.steps + 1):
            t0 = time.perf_counter()
            prompts = sampler.next(recipe.rollout.prompts_per_step)
            rollouts = actors.generate(
                [tokenizer.encode(p.prompt) for p in prompts],
                n,
                recipe.rollout.max_new_tokens,
                recipe.rollout.temperature,
                seed=recipe.run.seed * 1_000_003 + step,
            )
            t_rollout = time.perf_counter()
            responses = [tokenizer.decode(r.response_ids) for r in rollouts]
            results = actors.verify(
                [
                    (text, prompts[r.prompt_index].answer, prompts[r.prompt_index].meta)
                    for text, r in zip(responses, rollouts, strict=True)
                ]
            )
            t_verify = time.perf_counter()
            rewards = torch.tensor([res.reward for res in results])
            advantages = group_advantages(rewards, n, recipe.algorithm.advantage_scale)
            update = actors.update(make_batch(rollouts, advantages, tokenizer.pad_token_id))
            t_update = time.perf_counter()
            sync_s = actors.sync_weights()
            mismatch = parity()
            timings = {
                "time_rollout_s": t_rollout - t0,
                "time_verify_s": t_verify - t_rollout,
                "time_update_s": t_update - t_verify,
                "time_sync_s": sync_s,
                "time_step_s": time.perf_counter() - t0,
            }
            metrics = {"step": step, "time": time.time(), **rollout_metrics(rollouts, results, n), **update}
            metrics.update(mismatch)
            metrics.update(timings)
            metrics["rollout_tokens_per_s"] = (
                metrics["response_len"] * len(rollouts) / timings["time_rollout_s"]
            )
            _log(metrics_path, metrics, wandb_run)
            if recipe.trainer.eval_every and (
                step % recipe.trainer.eval_every == 0 or step == recipe.trainer.steps
            ):
                held_out(step)
            if step % recipe.trainer.save_every == 0 or step == recipe.trainer.steps:
                _checkpoint(
                    actors, run_dir / "checkpoints" / f"step_{step}", step, sampler, recipe, tokenizer
                )
    finally:
        actors.shutdown()
        if wandb_run is not None:
            wandb_run.finish()
    return metrics


def rollout_metrics(rollouts: list[Rollout], results: list[Result], n: int) -> dict[str, float | None]:
    """Reward, accuracy, group solve fractions, lengths and verifier statuses of one step's rollouts."""
    rewards = torch.tensor([res.reward for res in results])
    solved = (torch.tensor([res.correct for res in results]).view(-1, n)).sum(1)
    correct = [r for r, res in zip(rollouts, results, strict=True) if res.correct]
    wrong = [r for r, res in zip(rollouts, results, strict=True) if not res.correct]
    return {
        "reward_mean": float(rewards.mean()),
        "accuracy": len(correct) / len(results),
        "solved_none": float((solved == 0).float().mean()),  # groups with no signal: all wrong ...
        "solved_all": float((solved == n).float().mean()),  # ... or all right
        "response_len": _mean_length(rollouts),
        "response_len_correct": _mean_length(correct),
        "response_len_wrong": _mean_length(wrong),
        "truncated": sum(r.finish_reason == "length" for r in rollouts) / len(rollouts),
        **{f"status_{s}": sum(res.status == s for res in results) for s in STATUSES},
    }


def _mean_length(rollouts: list[Any]) -> float | None:
    """None when there are none (logged as null, so curves show a gap rather than a false 0)."""
    return sum(len(r.response_ids) for r in rollouts) / len(rollouts) if rollouts else None


def _start_wandb(recipe: RecipeConfig, run_dir: Path) -> Any:
    """A wandb run in the run directory; offline unless WANDB_MODE / WANDB_API_KEY say otherwise."""
    import os

    import wandb

    mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    return wandb.init(
        project="rlvr",
        name=recipe.run.name,
        dir=str(run_dir),
        config=recipe.to_dict(),
        mode=mode,
        resume="allow",
    )


def _log(path: Path, metrics: dict[str, Any], wandb_run: Any) -> None:
    with path.open("a") as f:
        f.write(json.dumps(metrics) + "\n")
    if wandb_run is not None:
        wandb_run.log(metrics, step=metrics["step"])
    print(
        f"step {metrics['step']:>4}  reward {metrics['reward_mean']:+.3f}  acc {metrics['accuracy']:.3f}  "
        f"len {metrics['response_len']:.1f}  loss {metrics['loss']:+.4f}  kl {metrics['approx_kl']:.2e}  "
        f"clip {metrics['clip_low'] + metrics['clip_high']:.3f}  sync {metrics['time_sync_s']:.2f}s  "
        + (f"parity {metrics['parity_max_abs']:.1e}  " if "parity_max_abs" in metrics else "")
        + f"{metrics['time_step_s']:.1f}s",
        flush=True,
    )


def _checkpoint(
    actors: TrainingActors,
    path: Path,
    step: int,
    sampler: PromptSampler,
    recipe: RecipeConfig,
    tokenizer: CharTokenizer | HFTokenizer,
) -> None:
    """Model, optimiser, RNG, data cursor and config into `path`, atomically: written to a temporary folder
    and renamed, so a crash mid-write never leaves a checkpoint that `resume: auto` would pick."""
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    actors.save(str(partial))
    recipe.save(partial)
    if isinstance(tokenizer, CharTokenizer):  # so `rlvr eval` and a later run can start from the checkpoint
        tokenizer.save(partial)
    (partial / "trainer_state.json").write_text(json.dumps({"step": step, "sampler": sampler.state()}))
    shutil.rmtree(path, ignore_errors=True)
    partial.rename(path)
