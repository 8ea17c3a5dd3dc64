"""What happens around the RL step without being the algorithm: the parity probe after each weight sync, the
held-out evaluation, and checkpoints. Each is a `Hook` the `Trainer` calls at fixed points."""

from __future__ import annotations

import json
import re
import shutil
import time
from typing import TYPE_CHECKING, Any

from rlvr.data import fingerprint, load_prompts
from rlvr.evaluate import evaluate, write_result
from rlvr.sampler import ScoredRollout
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
    engine serves the weights the learner holds (`rollout.parity_probe`), on the first step and every
    `rollout.parity_every` steps. It samples again (about a tenth of a CPU step), so it is not run every
    step by default: each update's `logprob_gap` compares the same two policies on the step's own
    rollouts (with `algorithm.old_logprobs: recompute`, at no cost)."""

    def after_sync(self, step: int) -> dict[str, Any]:
        t = self.trainer
        r = t.recipe.rollout
        if not r.parity_probe or (step - 1) % r.parity_every:
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
        cfg = self.trainer.recipe.trainer
        if step % cfg.save_every == 0 or step == cfg.steps:
            self.save(step)

    def save(self, step: int) -> None:
        """A checkpoint of the learner's state now, labelled `step`."""
        t = self.trainer
        cfg = t.recipe.trainer
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
        self.retire(cfg.keep_last)

    def retire(self, keep: int) -> None:
        """Deletes complete step folders beyond the newest `keep` (0 keeps all)."""
        folders = self.trainer.run_dir.glob("checkpoints/step_*")
        steps = sorted((int(m.group(1)), p) for p in folders if (m := re.fullmatch(r"step_(\d+)", p.name)))
        for _, old in steps[:-keep] if keep else []:
            shutil.rmtree(old, ignore_errors=True)


class SampleDumpHook(Hook):
    """Every `trainer.dump_every` steps, the first `trainer.dump_groups` groups of the step as JSONL in
    `<run>/samples/step_N.jsonl`: prompt, response, reward, status, extracted answer (for `rlvr show`)."""

    def after_step(self, step: int) -> None:
        t = self.trainer
        cfg = t.recipe.trainer
        if not cfg.dump_every or step % cfg.dump_every:
            return
        n = t.settings.n
        rows = [sample_record(s, i // n) for i, s in enumerate(t.last_drawn[: cfg.dump_groups * n])]
        path = t.run_dir / "samples" / f"step_{step}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def sample_record(s: ScoredRollout, group: int) -> dict[str, Any]:
    """One dumped sample."""
    return {
        "group": group,
        "id": s.row.id,
        "source": s.row.source,
        "prompt": s.row.prompt,
        "answer": s.row.answer,
        "response": s.text,
        "reward": s.reward,
        "status": s.result.status,
        "extracted": s.result.extracted,
        "verifier": s.verifier,
        "finish_reason": s.rollout.finish_reason,
    }
