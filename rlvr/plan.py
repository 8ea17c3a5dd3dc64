"""What `rlvr train --dry-run` checks and prints: data, verifier, model size and the actor plan."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlvr.config import RecipeConfig


@dataclass
class PlanReport:
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self) -> str:
        out = list(self.lines)
        out += [f"error: {e}" for e in self.errors]
        return "\n".join(out)


def check_data(config: RecipeConfig, report: PlanReport) -> None:
    from rlvr.data import read_prompt_file

    for key in ("train_files", "eval_files"):
        for i, path in enumerate(getattr(config.data, key)):
            where = f"data.{key}[{i}]"
            try:
                prompts = read_prompt_file(path)
            except (FileNotFoundError, ValueError) as exc:
                report.errors.append(f"{where}: {exc}")
                continue
            report.lines.append(f"{where}: {path}: {len(prompts.rows)} rows, {prompts.malformed} malformed")
            report.lines += [f"  malformed {p}" for p in prompts.problems[:5]]
            if not prompts.rows:
                report.errors.append(f"{where}: {path} has no valid rows")


def check_verifier(config: RecipeConfig, report: PlanReport) -> None:
    from verifiers import get_verifier

    v = config.verifier
    try:
        get_verifier(v.name, reward_correct=v.reward_correct, reward_wrong=v.reward_wrong, **v.options)
    except (ValueError, TypeError, ImportError) as exc:
        report.errors.append(f"verifier.name: {exc}")
        return
    report.lines.append(f"verifier: {v.name} ({v.workers} processes, soft limit {v.soft_timeout_s}s)")


def actor_plan(config: RecipeConfig) -> list[str]:
    r, res = config.rollout, config.resources
    return [
        f"rollout workers: {r.workers} x {r.engine} engine, {res.gpus_per_rollout_worker} GPU each",
        f"verifier workers: 1 x VerifierPool({config.verifier.workers} processes)",
        f"learners: {res.learner_workers} rank(s), {res.gpus_per_learner} GPU each",
        f"per step: {r.prompts_per_step} prompts x {r.n} samples = {r.prompts_per_step * r.n} rollouts",
    ]


def check_recipe(config: RecipeConfig) -> PlanReport:
    report = PlanReport()
    check_data(config, report)
    check_verifier(config, report)
    report.lines += actor_plan(config)
    return report
