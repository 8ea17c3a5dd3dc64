"""The whole path on the real pretrained model, CI-sized: SmolLM2-135M-Instruct imported as Megrez2 (conftest
`smollm2`), a prompt set of real word problems from the builder with a held-out split, the SFT set of real
worked solutions decontaminated against it, `recipes/smollm2.yaml` for 2 packed SFT steps then 2 RL steps on
4 prompts x 2 samples x 32 tokens (chat template, stop tokens, per-row verifiers, vLLM and the learner on the
same weights), held-out eval on 8 prompts before and after, then `rlvr eval` of the final checkpoint."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlvr.data import read_prompt_file

REPO = Path(__file__).resolve().parents[1]
RLVR = str(Path(sys.executable).with_name("rlvr"))
# the recipe's decontamination less its optional entries for a local `make smollm2`'s files (absent in CI)
SHARED_EVAL_SETS_ONLY = (
    "decontaminate=[{path: ../shared/data/gsm8k_test.jsonl, field: question}, "
    "{path: ../shared/data/qwen25math_evalsets.jsonl.gz, field: [question, problem, content]}]"
)


def _rlvr(*args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    done = subprocess.run([RLVR, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout


@pytest.mark.slow
def test_import_build_train_two_steps_and_evaluate_the_real_model(
    smollm2, shared_data: Path, tmp_path: Path
) -> None:
    data = tmp_path / "prompts"
    _rlvr(
        "data", "build", "recipes/smollm2-data.yaml", f"output_dir={data}", "limit_per_source=5",
        "heldout_size=8", "difficulty.enabled=false", SHARED_EVAL_SETS_ONLY,
    )  # fmt: skip
    held, train = read_prompt_file(data / "heldout.parquet"), read_prompt_file(data / "prompts.parquet")
    assert len(held.rows) == 8 and len(train.rows) >= 4
    assert not {r.id for r in held.rows} & {r.id for r in train.rows}
    assert {r.verifier for r in train.rows + held.rows} <= {"math", "numeric"}

    sft_set = tmp_path / "sft"
    heldout_only = f'decontaminate=[{{path: "{data / "heldout.parquet"}", field: prompt}}]'
    _rlvr("data", "sft", "recipes/smollm2-sft-data.yaml", f"output_dir={sft_set}", heldout_only)
    conversations = [json.loads(line) for line in (sft_set / "sft.jsonl").read_text().splitlines()]
    assert len(conversations) > 100 and all(c["messages"][-1]["role"] == "assistant" for c in conversations)
    assert not {c["question"] for c in conversations} & {r.prompt for r in held.rows}

    run = tmp_path / "run"
    _rlvr(
        "train", "recipes/smollm2.yaml", f"model.path={smollm2.path}", f"run.output_dir={run}",
        f"data.train_files=[{data / 'prompts.parquet'}]", f"data.eval_files=[{data / 'heldout.parquet'}]",
        f"sft.data={sft_set / 'sft.jsonl'}", "sft.epochs=0", "sft.steps=2", "sft.batch_tokens=700",
        "sft.heldout=4", "sft.save_every=0",
        "trainer.steps=2", "trainer.eval_every=2", "trainer.eval_k=1", "trainer.save_every=2",
        "rollout.prompts_per_step=4", "rollout.n=2", "rollout.max_new_tokens=32", "rollout.parity_prompts=2",
        "rollout.parity_every=1", "algorithm.minibatches=1", "algorithm.dynamic_sampling=false",
    )  # fmt: skip
    sft = [json.loads(line) for line in (run / "sft/metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in sft] == [1, 2] and sft[-1][
        "heldout_loss"
    ] > 0  # packed, turn-level, on the real set
    assert json.loads((run / "sft/sft_done.json").read_text())["samples"] > 100
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    for s in steps:
        assert math.isfinite(s["loss"]) and sum(s[f"solved_{c}_of_2"] for c in range(3)) == 4
        assert s["parity_max_abs"] < 1e-3  # vLLM through the plugin and the learner score the same tokens
        assert 0 < s["response_len"] <= 32 and s["status_error"] == 0
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 2] and all(e["prompts"] == 8 for e in evals)

    final = sorted((run / "checkpoints").glob("step_*"))[-1]
    out = tmp_path / "eval.jsonl"
    _rlvr(
        "eval", str(final), "--data", str(data / "heldout.parquet"), "--k", "1", "--max-new-tokens", "32",
        "--template", "chat", "--out", str(out),
    )  # fmt: skip
    result = json.loads(out.read_text().splitlines()[-1])
    assert result["prompts"] == 8 and 0.0 <= result["pass@1"] <= 1.0
