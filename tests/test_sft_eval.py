"""The CPU default's parts: the synthetic task, `rlvr sft`, `rlvr eval`, warm start and held-out eval."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlvr.config import load_recipe
from rlvr.data import read_prompt_file
from rlvr.data.arithmetic import ArithmeticTask, task_rows
from rlvr.evaluate import pass_at_k
from rlvr.sft import run_sft
from verifiers import get_verifier

REPO = Path(__file__).resolve().parents[1]
RLVR = str(Path(sys.executable).with_name("rlvr"))
SMALL_SFT = [
    "sft.steps=30",
    "sft.batch_size=16",
    "sft.log_every=10",
    "sft.data=task://arithmetic?n=500&seed=7",
]
CI_SIZED_RUN = [  # a few SFT and RL steps, evaluated on 8 held-out problems at every step
    *SMALL_SFT,
    "trainer.steps=2",
    "trainer.eval_every=1",
    "trainer.eval_k=2",
    "trainer.wandb=false",
    "rollout.prompts_per_step=4",
    "rollout.n=4",
    'data.eval_files=["task://arithmetic?n=8&seed=99&max_operand=9&steps=3"]',
]


def test_task_is_deterministic_and_its_answers_verify() -> None:
    first = task_rows("task://arithmetic?n=50&seed=3&steps=3&max_operand=9")
    again = read_prompt_file("task://arithmetic?n=50&seed=3&steps=3&max_operand=9").rows
    assert first == again
    assert [r.prompt for r in task_rows("task://arithmetic?n=50&seed=4&steps=3&max_operand=9")] != [
        r.prompt for r in first
    ]
    numeric = get_verifier("numeric")
    for row in first:
        assert row.prompt.count("+") + row.prompt.count("-") == 3 and row.prompt.endswith("=")
        assert numeric.verify(row.meta["solution"], row.answer).correct
        assert not numeric.verify(row.meta["solution"] + "1", row.answer).correct
    direct = ArithmeticTask(steps=2, max_operand=9, direct=50).rows(200, seed=1)
    bare = [r for r in direct if r.meta["solution"].startswith("=")]
    assert 60 < len(bare) < 140 and all(numeric.verify(r.meta["solution"], r.answer).correct for r in bare)
    sloppy = task_rows("task://arithmetic?n=50&seed=3&steps=3&max_operand=9&slips=60")
    assert [(r.prompt, r.answer) for r in sloppy] == [(r.prompt, r.answer) for r in first]
    slipped = [r for r in sloppy if r.meta["slip_at"] is not None]
    assert 15 < len(slipped) < 45
    for row in sloppy:
        steps = [
            re.fullmatch(r"(-?\d+)([+-])(\d+)=(-?\d+)", line).groups()
            for line in row.meta["solution"].split(",")
        ]
        errors = [int(c) - (int(a) + int(b) if op == "+" else int(a) - int(b)) for a, op, b, c in steps]
        slip = row.meta["slip_at"]
        assert errors == [int(i == slip) for i in range(3)]  # one step one too high, carried on consistently
        assert numeric.verify(row.meta["solution"], row.answer).correct == (slip is None)
    with pytest.raises(ValueError, match="unknown option"):
        task_rows("task://arithmetic?n=5&colour=red")
    with pytest.raises(ValueError, match="unknown task"):
        task_rows("task://geometry?n=5")


def test_pass_at_k() -> None:
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 1, 1) == 0.25
    assert abs(pass_at_k(8, 2, 4) - (1 - 15 / 70)) < 1e-12


def test_sft_lowers_the_loss_and_eval_reads_the_checkpoint(tmp_path: Path) -> None:
    recipe = load_recipe(REPO / "recipes/tiny.yaml", [f"run.output_dir={tmp_path}", *SMALL_SFT])
    out = run_sft(recipe, log=False)
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and losses[-1] < losses[0] * 0.8
    assert (out / "config.json").exists() and (out / "rlvr_tokenizer.json").exists()
    result_file = tmp_path / "eval.jsonl"
    done = subprocess.run(
        [
            RLVR,
            "eval",
            str(out),
            "--data",
            "task://arithmetic?n=6&seed=99",
            "--k",
            "2",
            "--verifier",
            "numeric",
            "--max-new-tokens",
            "12",
            "--out",
            str(result_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(result_file.read_text())
    assert result["prompts"] == 6 and 0.0 <= result["pass@1"] <= result["pass@2"] <= 1.0
    assert sum(result["statuses"].values()) == 12


def test_sft_refuses_a_recipe_without_steps() -> None:
    done = subprocess.run(
        [RLVR, "sft", "recipes/tiny.yaml", "sft.steps=0"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 2 and "sft.steps" in done.stderr


@pytest.mark.slow
def test_ci_sized_run_warm_starts_evaluates_and_plots(tmp_path: Path) -> None:
    import ray

    from rlvr.trainer import train

    overrides = [f"run.output_dir={tmp_path}", *CI_SIZED_RUN]
    try:
        train(load_recipe(REPO / "recipes/arithmetic.yaml", overrides))
    finally:
        ray.shutdown()
    evals = [json.loads(x) for x in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1, 2] and all(e["prompts"] == 8 for e in evals)
    assert (tmp_path / "sft/sft_done.json").exists()
    plots = subprocess.run([RLVR, "plot", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert plots.returncode == 0, plots.stderr
    assert (tmp_path / "plots/pass_at_1_vs_step.png").stat().st_size > 1000


@pytest.mark.slow
def test_demo_runs_as_a_ray_job_on_a_head_it_starts_and_stops(tmp_path: Path) -> None:
    overrides = [f"run.output_dir={tmp_path}", *CI_SIZED_RUN]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    done = subprocess.run(
        [sys.executable, "-m", "rlvr.demo", "recipes/arithmetic.yaml", *overrides],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "SUCCEEDED" in out and "held-out pass@1" in out and "before RL" in out
    assert len((tmp_path / "eval.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "plots/pass_at_1_vs_step.png").exists()
