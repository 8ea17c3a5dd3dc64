"""The CPU default's parts: the synthetic task, `rlvr sft`, `rlvr eval`, warm start and held-out eval."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlvr.config import load_recipe
from rlvr.data import read_prompt_file
from rlvr.data.arithmetic import ArithmeticTask, task_rows
from rlvr.data.schema import PromptRow
from rlvr.evaluate import evaluate, local_sampler, majority_correct, pass_at_k, vote_answer
from rlvr.sampler import SamplingSettings, ScoredRollout
from rlvr.sft import run_sft
from rollout.types import Rollout
from verifiers import Result, get_verifier

REPO = Path(__file__).resolve().parents[1]
RLVR = str(Path(sys.executable).with_name("rlvr"))
SMALL_SFT = [
    "sft.steps=30",
    "sft.batch_tokens=512",  # one row: about 17 samples of 29 tokens
    "sft.seq_len=512",
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


def test_majority_vote() -> None:
    assert not majority_correct(["7", "5", "5"], [True, False, False])  # the majority is wrong
    assert majority_correct(["5", "7", "7"], [False, True, True])
    assert not majority_correct(["5", "7"], [False, True]) and majority_correct(["7", "5"], [True, False])
    assert majority_correct(["7", None, None, "5"], [True, False, False, False])  # no answer, no vote
    assert not majority_correct([None, None], [True, True]) and not majority_correct([], [])
    assert majority_correct(["5", "7", "5"], [True, False, False])  # the answer's first sample's verdict
    with pytest.raises(ValueError, match="2 answers but 1 verdicts"):
        majority_correct(["5", "7"], [True])


def test_a_sample_votes_for_its_extracted_answer_normalised() -> None:
    def scored(text: str, extracted: str | None) -> ScoredRollout:
        row = PromptRow("p", "1/2 = ?", "1/2")
        result = Result(False, -1.0, "wrong", extracted)
        return ScoredRollout(row, Rollout(0, 0, [1], [2], [0.0], "stop"), text, result, "math")

    assert vote_answer(scored(r"so \boxed{0.5}", r"\dfrac12")) == vote_answer(scored("", r"\frac{1}{2}"))
    assert vote_answer(scored(r"first \boxed{1}, then \boxed{ 3 }", None)) == "3"  # a verifier with none
    assert vote_answer(scored(r"no box \boxed{3", None)) is None
    assert vote_answer(scored("no answer", None)) is None and vote_answer(scored("", " ")) is None
    assert vote_answer(scored(r"<think>\boxed{2}</think> so \boxed{3}", None)) == "3"  # no draft votes
    assert vote_answer(scored(r"<think>so \boxed{2}", None)) is None  # cut off while thinking


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sft-run")
    return run_sft(load_recipe(REPO / "recipes/tiny.yaml", [f"run.output_dir={out}", *SMALL_SFT]), log=False)


def test_sft_lowers_the_loss_and_eval_reads_the_checkpoint(sft_run: Path, tmp_path: Path) -> None:
    out = sft_run
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 30 and losses[-1] < losses[0] * 0.8
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
    assert result["temperature"] == 1.0 and 0.0 <= result["maj@2"] <= result["pass@2"]


def argmax_decode(model: torch.nn.Module, prompt: list[int], stops: list[int], max_new: int) -> list[int]:
    """Greedy decoding the slow way: a full forward pass per token, no cache."""
    ids = list(prompt)
    with torch.no_grad():
        while len(ids) - len(prompt) < max_new and not (len(ids) > len(prompt) and ids[-1] in stops):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt) :]


def test_greedy_eval_is_argmax_decoding_and_repeatable(sft_run: Path) -> None:
    from rlvr.model.megrez2 import Megrez2ForCausalLM

    rows = task_rows("task://arithmetic?n=6&seed=99")
    with local_sampler(sft_run, "torch", "numeric") as sampler:
        greedy = SamplingSettings(n=2, max_new_tokens=12, temperature=0.0)
        scored = sampler.sample(rows, greedy, [1] * 6)
        again = sampler.sample(rows, greedy, [2] * 6)  # seeds do not matter to argmax decoding
        results = [evaluate(rows, sampler, 4, 12, [s] * 6, progress=False, temperature=0.0) for s in (1, 2)]
        prompts = [sampler.prompt_ids(row) for row in rows]
        stops = sampler.tokenizer.stop_token_ids
        with pytest.raises(ValueError, match="temperature must be >= 0"):
            evaluate(rows, sampler, 4, 12, temperature=-0.5)
    assert [s.rollout.response_ids for s in scored] == [s.rollout.response_ids for s in again]
    assert [(s.rollout.prompt_index, s.rollout.sample_index) for s in scored] == [
        (p, i) for p in range(6) for i in range(2)
    ]
    model = Megrez2ForCausalLM.from_pretrained(sft_run).eval()
    for s in scored:
        expected = argmax_decode(model, prompts[s.rollout.prompt_index], stops, 12)
        assert s.rollout.response_ids == expected
    first, second = ({k: v for k, v in r.items() if k != "seconds"} for r in results)
    assert first == second and first["k"] == 1 and first["temperature"] == 0.0
    accuracy = sum(s.result.correct for s in scored[::2]) / 6
    assert first["pass@1"] == first["maj@1"] == accuracy and sum(first["statuses"].values()) == 6


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
