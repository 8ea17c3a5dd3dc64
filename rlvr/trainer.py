"""The RLVR driver. `Trainer.step` is the algorithm; everything else is set-up and hooks.

    1 sample prompts   2 rollout (n per prompt, T = 1)   3 verify (binary reward)   4 advantages (GAE, λ=γ=1)
    5 update (PPO clipped loss)   6 sync weights into the engines   7 log   8 checkpoint

Runs on the Ray driver (`rlvr train`, or a job from `ray job submit`); the actors do the work.
"""

from __future__ import annotations

import json
import random
import re
import time
from functools import partial
from pathlib import Path
from typing import Any

import ray
import torch

from rlvr.actors import TrainingActors, required_resources
from rlvr.algorithm import ADVANTAGES, response_mask
from rlvr.batch import make_batch
from rlvr.cluster import check_resources, ensure_ray
from rlvr.config import RecipeConfig
from rlvr.data import PromptRow, fingerprint, load_prompts
from rlvr.dynamic_sampling import collect_groups
from rlvr.hooks import CheckpointHook, EvalHook, Hook, ParityHook, SampleDumpHook
from rlvr.learner import model_config_for
from rlvr.metrics import MetricsLog, Timer, rollout_metrics
from rlvr.restarts import WorkerFailures
from rlvr.sampler import PromptFormat, Sampler, SamplingSettings, ScoredRollout
from rlvr.seeds import derive_seed, prompt_seeds
from rlvr.sft import is_done, run_sft, sft_dir
from rlvr.tokenizer import load_tokenizer


class PromptStream:
    """Walks the prompts in epochs, reshuffled per epoch from the run seed; its position is checkpointed."""

    def __init__(self, rows: list[PromptRow], seed: int, shuffle: bool) -> None:
        self.rows, self.seed, self.shuffle = rows, seed, shuffle
        self.epoch, self.position = 0, 0
        self.order = self._order()

    def _order(self) -> list[int]:
        order = list(range(len(self.rows)))
        if self.shuffle:
            random.Random(derive_seed(self.seed, "data_order", self.epoch)).shuffle(order)
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


def warm_start(recipe: RecipeConfig) -> Path:
    """The SFT checkpoint RL starts from: `rlvr sft`'s output in the run directory when it was trained on the
    same data and settings (its fingerprint), else trained now (from `model.path` when the recipe has one)."""
    if is_done(recipe):
        print(f"warm start: {sft_dir(recipe)} (already trained on this data and settings)")
        return sft_dir(recipe)
    print(f"warm start: SFT on {recipe.sft.data}")
    return run_sft(recipe)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder (`step_N`, never a `.partial` one being written)."""
    done = [p.parent for p in run_dir.glob("checkpoints/step_*/trainer_state.json")]
    steps = [(int(m.group(1)), p) for p in done if (m := re.fullmatch(r"step_(\d+)", p.name))]
    return max(steps)[1] if steps else None


class Trainer:
    """`setup()` builds everything a run needs; `step(t)` is one RL step; `run()` loops with the hooks."""

    def __init__(self, recipe: RecipeConfig) -> None:
        self.recipe = recipe
        self.run_dir = recipe.run.dir
        self.start_step = 0
        self.hooks: list[Hook] = []
        self.updated = False  # whether the current step's learner update has run

    def setup(self) -> None:
        recipe = self.recipe
        recipe.save(self.run_dir)
        self.owns_ray = ensure_ray(required_resources(recipe)["CPU"])
        check_resources(required_resources(recipe), "lower resources.* / rollout.workers or add nodes")
        if recipe.sft.enabled:  # the report's order: SFT, then RL from its checkpoint
            recipe.model.path = str(warm_start(recipe))
        self.tokenizer = load_tokenizer(recipe.model.tokenizer or recipe.model.path)
        self.format = PromptFormat(self.tokenizer, recipe.data.prompt)
        self.prompts = PromptStream(self._train_rows(), recipe.run.seed, recipe.data.shuffle)
        self.actors = TrainingActors(
            recipe, model_config_for(recipe), self.tokenizer.stop_token_ids, self.tokenizer.pad_token_id
        )
        v = recipe.verifier
        self.sampler = Sampler(self.format, self.actors.generate, self.actors.verify, v.name, v.reward_wrong)
        r = recipe.rollout
        self.settings = SamplingSettings(r.n, r.max_new_tokens, r.temperature, r.top_p)
        self._resume()
        self.hooks = [ParityHook(self), EvalHook(self), CheckpointHook(self), SampleDumpHook(self)]
        self.last_drawn: list[ScoredRollout] = []  # the latest step's rollouts, for the sample dump
        wandb_config = recipe.to_dict() if recipe.trainer.wandb else None
        self.log = MetricsLog(self.run_dir, wandb_config, recipe.run.name)

    def step(self, step: int) -> dict[str, Any]:
        """One RL step (phases 1-6); returns its metrics."""
        timer, a = Timer(), self.recipe.algorithm
        # 1-3: prompts, n responses each, a reward per response (with dynamic sampling, groups that carry no
        # signal are dropped and refilled with fresh prompts)
        draw, want = partial(self.draw, step, timer=timer), self.recipe.rollout.prompts_per_step
        scored, drawn, sampling = collect_groups(
            draw, want, self.settings.n, a.dynamic_sampling, a.max_sampling_rounds
        )
        with timer("advantages"):  # 4: group baseline, spread over the tokens by GAE(γ, λ)
            advantages, advantage_metrics = self.advantages(scored)
        with timer("update"):  # 5: PPO epochs over the batch
            update = self.update(scored, advantages)
        with timer("sync"):  # 6: the new weights into every rollout engine, in place
            self.actors.sync_weights()
        self.last_drawn = drawn
        metrics = {"step": step, "time": time.time(), **rollout_metrics(drawn, self.settings.n)}
        metrics.update({**sampling, **advantage_metrics, **update})
        for hook in self.hooks:
            metrics.update(hook.after_sync(step))  # the parity probe, on the synced weights
        restarts = {f"restarts_{kind.replace(' ', '_')}": n for kind, n in self.actors.restarts.total.items()}
        return {**metrics, **restarts, **timer.total(), **self.throughput(drawn, timer)}

    def draw(self, step: int, count: int, offset: int, timer: Timer) -> list[ScoredRollout]:
        """Phases 1-3 for `count` new prompts, the `offset`-th onwards of this step (their seeds)."""
        with timer("rollout"):  # 1-2: prompts, then n responses each from the current policy
            prompts = self.prompts.next(count)
            seeds = prompt_seeds(self.recipe.run.seed, "rollout", step, count, first=offset)
            rollouts = self.sampler.generate(prompts, self.settings, seeds)
        with timer("verify"):  # 3: a reward per response, each by its row's verifier
            return self.sampler.score(prompts, rollouts)

    def update(self, scored: list[ScoredRollout], advantages: torch.Tensor) -> dict[str, float]:
        """The learner step on the scored rollouts; none (dynamic sampling found no signal): no update."""
        if not scored:
            return {"update_skipped": 1.0}
        batch = make_batch([s.rollout for s in scored], advantages, self.tokenizer.pad_token_id)
        metrics = self.actors.update(batch)
        self.updated = True
        return metrics

    def throughput(self, scored: list[ScoredRollout], timer: Timer) -> dict[str, float]:
        tokens = sum(len(s.rollout.response_ids) for s in scored)
        return {"rollout_tokens_per_s": tokens / max(timer.seconds.get("time_rollout_s", 0.0), 1e-9)}

    def advantages(self, scored: list[ScoredRollout]) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-token advantages (B, R) of the step's rewards by the recipe's estimator."""
        a = self.recipe.algorithm
        if not scored:
            return torch.zeros(0, 0), {}
        rewards = torch.tensor([s.reward for s in scored], dtype=torch.float32)
        mask = response_mask([len(s.rollout.response_ids) for s in scored])
        estimator = ADVANTAGES[a.advantage]
        return estimator(
            rewards, mask, group_size=self.settings.n, gamma=a.gamma, lam=a.lam, scale=a.advantage_scale
        )

    def run(self) -> dict[str, Any]:
        """Runs the recipe to `trainer.steps`; returns the last step's metrics."""
        self.setup()
        metrics: dict[str, Any] = {}
        step = self.start_step
        try:
            for hook in self.hooks:
                hook.before_training(self.start_step)
            for step in range(self.start_step + 1, self.recipe.trainer.steps + 1):
                self.updated = False
                metrics = self.step(step)
                self.log.log(metrics)  # 7
                for hook in self.hooks:
                    hook.after_step(step)  # held-out eval; 8: checkpoint
        except WorkerFailures as exc:
            self.stop_on_failures(step, exc)
        finally:
            self.close()
        return metrics

    def stop_on_failures(self, step: int, exc: WorkerFailures) -> None:
        """Too many workers died: checkpoint what the learner holds (this step's update if it ran, else the
        last step's) and stop with the reason. A later `rlvr train` resumes from it."""
        done = step if self.updated else step - 1
        if done > self.start_step:
            next(h for h in self.hooks if isinstance(h, CheckpointHook)).save(done)
        raise WorkerFailures(f"stopping at step {step}: {exc}; checkpoint of step {done} written") from exc

    def close(self) -> None:
        if hasattr(self, "actors"):
            self.actors.shutdown()
        if hasattr(self, "log"):
            self.log.close()
        if getattr(self, "owns_ray", False):
            ray.shutdown()

    def _train_rows(self) -> list[PromptRow]:
        rows = self.fit(load_prompts(self.recipe.data.train_files), "data.train_files")
        if not rows:
            raise ValueError(
                f"every prompt is longer than data.max_prompt_tokens={self.recipe.data.max_prompt_tokens}"
            )
        return rows

    def fit(self, rows: list[PromptRow], what: str) -> list[PromptRow]:
        """The rows whose prompt, as the engine sees it, fits `data.max_prompt_tokens`; the rest are counted,
        reported on the console and in `<run>/prompts.json`."""
        limit = self.recipe.data.max_prompt_tokens
        kept = [r for r in rows if len(self.format.ids(r)) <= limit]
        report = {"rows": len(rows), "kept": len(kept), "too_long": len(rows) - len(kept), "limit": limit}
        if kept != rows:
            print(f"{what}: skipping {report['too_long']} of {len(rows)} prompts longer than {limit} tokens")
        path = self.run_dir / "prompts.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**summary, what: report}, indent=1))
        return kept

    def _resume(self) -> None:
        """Continues from the newest checkpoint (`trainer.resume: auto`) over the same prompt set."""
        resume = latest_checkpoint(self.run_dir) if self.recipe.trainer.resume == "auto" else None
        if resume is None:
            return
        state = json.loads((resume / "trainer_state.json").read_text())
        cursor = check_same_prompts(state, fingerprint(self.prompts.rows), self.recipe.trainer.on_data_change)
        self.actors.load(str(resume))
        self.actors.sync_weights()
        self.prompts.restore(cursor)
        self.start_step = state["step"]
        print(f"resumed from {resume} at step {self.start_step}")


def check_same_prompts(state: dict[str, Any], now: dict[str, Any], on_change: str) -> dict[str, int]:
    """The data cursor to resume at. A prompt set that changed since the checkpoint is an error, or with
    `trainer.on_data_change: new_epoch` a fresh epoch of the new set."""
    saved = state.get("prompts")
    if saved is None or saved == now:
        return state["sampler"]
    if on_change == "new_epoch":
        print(f"prompt set changed since the checkpoint ({saved} -> {now}): starting a new epoch of it")
        return {"epoch": state["sampler"]["epoch"] + 1, "position": 0}
    raise ValueError(
        f"the prompt set changed since the checkpoint: it had {saved['count']} prompts (ids hash "
        f"{saved['ids_sha256']}), now {now['count']} ({now['ids_sha256']}); resuming would serve the wrong "
        "prompts. Start a new epoch over the new set with trainer.on_data_change=new_epoch, or a new run "
        "directory (run.output_dir) / trainer.resume=never"
    )


def train(recipe: RecipeConfig) -> dict[str, Any]:
    """Runs the recipe to `trainer.steps`; returns the last step's metrics."""
    return Trainer(recipe).run()
