"""What happens around the RL step without being the algorithm: the parity probe after each weight sync, the
held-out evaluation, and checkpoints. Each is a `Hook` the `Trainer` calls at fixed points."""

from __future__ import annotations

import json
import shutil
import time
from typing import TYPE_CHECKING, Any

from rlvr.data import fingerprint, load_prompts
from rlvr.evaluate import evaluate, write_result
from rlvr.seeds import prompt_seeds

if TYPE_CHECKING:
    from rlvr.trainer import Trainer


class Hook:
    """Called by `Trainer.run`: `before_training` once (at the start step), `after_sync` inside each step
    (its metrics join the step's), `after_step` after the step is logged."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def before_training(self, start_step: int) -> None:
        return None

    def after_sync(self, step: int) -> dict[str, Any]:
        return {}

    def after_step(self, step: int) -> None:
        return None


class ParityHook(Hook):
    """Learner vs engine log-probs of the same sampled tokens on fixed train prompts, right after a sync: the
    engine serves the weights the learner holds (`rollout.parity_probe`)."""

    def after_sync(self, step: int) -> dict[str, Any]:
        t = self.trainer
        r = t.recipe.rollout
        if not r.parity_probe:
            return {}
        rows = t.prompts.rows[: r.parity_prompts]
        prompts = [t.format.ids(row) for row in rows]
        seeds = prompt_seeds(t.recipe.run.seed, "parity", step, len(prompts))
        return t.actors.parity_probe(prompts, r.max_new_tokens, r.temperature, seeds, r.top_p)


class EvalHook(Hook):
    """pass@1 / pass@k on `data.eval_files` before RL, every `trainer.eval_every` steps and at the end, at
    temperature 1.0. Every evaluation draws the same seeds, so the curve compares policies, not luck."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        files = trainer.recipe.data.eval_files
        on = files and trainer.recipe.trainer.eval_every
        self.rows = trainer.fit(load_prompts(files, "data.eval_files"), "data.eval_files") if on else []

    def before_training(self, start_step: int) -> None:
        if start_step == 0:
            self.evaluate(0)  # the starting point: before any RL

    def after_step(self, step: int) -> None:
        cfg = self.trainer.recipe.trainer
        if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.steps):
            self.evaluate(step)

    def evaluate(self, step: int) -> None:
        if not self.rows:
            return
        t = self.trainer
        k = t.recipe.trainer.eval_k
        seeds = prompt_seeds(t.recipe.run.seed, "eval", 0, len(self.rows))
        result = evaluate(self.rows, t.sampler, k, t.recipe.rollout.max_new_tokens, seeds, progress=False)
        write_result(result, t.run_dir / "eval.jsonl", step=step, time=time.time())
        print(
            f"eval step {step:>4}  pass@1 {result['pass@1']:.3f}  pass@{k} {result[f'pass@{k}']:.3f}",
            flush=True,
        )


class CheckpointHook(Hook):
    """Model, optimiser, RNG, data cursor, prompt-set fingerprint, config and tokenizer every
    `trainer.save_every` steps and at the end, atomically: written to `step_N.partial` and renamed, so a crash
    mid-write never leaves a checkpoint that `resume: auto` would pick."""

    def after_step(self, step: int) -> None:
        t = self.trainer
        cfg = t.recipe.trainer
        if step % cfg.save_every and step != cfg.steps:
            return
        path = t.run_dir / "checkpoints" / f"step_{step}"
        partial = path.with_name(path.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        t.actors.save(str(partial))
        t.recipe.save(partial)
        t.tokenizer.save(partial)  # so `rlvr eval` and a later run can start from the checkpoint
        state = {"step": step, "sampler": t.prompts.state(), "prompts": fingerprint(t.prompts.rows)}
        (partial / "trainer_state.json").write_text(json.dumps(state))
        shutil.rmtree(path, ignore_errors=True)
        partial.rename(path)
