"""The `rlvr` command line as a user runs it: a real subprocess through the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rlvr(*args: str, stdin: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("rlvr")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **extra_env}
    return subprocess.run(
        [str(exe), *args], cwd=REPO, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_verify_from_the_shell() -> None:
    response = r"The answer is \boxed{0.5}"
    out = rlvr("verify", "--verifier", "math", "--reference", r"\frac12", response, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["correct"] is True and result["reward"] == 1.0 and result["status"] == "ok"
    assert result["extracted"] == "0.5"


def test_verify_reads_stdin_and_reports_wrong() -> None:
    out = rlvr("verify", "--verifier", "numeric", "--reference", "72", "-", "--json", stdin="so #### 71")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["correct"], result["reward"], result["status"]) == (False, -1.0, "wrong")


def test_verify_unknown_verifier_is_a_clear_error() -> None:
    out = rlvr("verify", "--verifier", "mathh", "--reference", "1", "1")
    assert out.returncode == 2
    assert "unknown verifier 'mathh'" in out.stderr and "did you mean 'math'" in out.stderr.lower()


def test_train_dry_run_validates_and_prints_plan() -> None:
    out = rlvr("train", "recipes/tiny.yaml", "rollout.n=4", "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rollout:   engine=vllm" in out.stdout and "n=4" in out.stdout
    assert "32 rows, 0 malformed" in out.stdout
    assert "8 prompts x 4 samples = 32 rollouts" in out.stdout


def test_train_bad_override_names_the_field() -> None:
    out = rlvr("train", "recipes/tiny.yaml", "rollout.temperatur=1.0", "--dry-run")
    assert out.returncode == 2
    assert "unknown key 'rollout.temperatur'; did you mean 'rollout.temperature'?" in out.stderr
    out = rlvr("train", "recipes/tiny.yaml", "algorithm.micro_batch_size=4", "--dry-run")
    assert out.returncode == 2 and "algorithm.micro_batch_size is no longer a key" in out.stderr
    assert "algorithm.micro_batch_tokens" in out.stderr


def test_dry_run_reports_malformed_rows_and_warns_of_missing_files(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        '{"id": "a", "prompt": "1+1?", "answer": "2"}\nnot json\n{"id": "b", "prompt": "2+2?"}\n'
    )
    out = rlvr("train", "recipes/tiny.yaml", f"data.train_files=[{prompts}]", "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rows, 2 malformed" in out.stdout
    assert "row 2: not JSON" in out.stdout and "row 3: missing 'answer'" in out.stdout
    out = rlvr("train", "recipes/tiny.yaml", f"data.train_files=[{tmp_path / 'none.jsonl'}]", "--dry-run")
    assert (
        out.returncode == 0
        and "warning: data.train_files[0]" in out.stdout
        and "does not exist" in out.stdout
    )


def test_full_scale_recipe_dry_run_builds_the_model_on_meta() -> None:
    out = rlvr("train", "recipes/rlvr.yaml", "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "31 layers, hidden 2048, 64 experts top-6; 7.50B parameters, 2.99B activated" in out.stdout
    assert "GPUs: 8 in all" in out.stdout
    # what one learner micro-batch costs, and the 128,880-token vocabulary's logits it never builds
    assert (
        "learner micro-batch: 16384 packed tokens ~4.9 GiB of activations (checkpointed, 16-bit)"
        in out.stdout
    )
    assert "never built, would be 23.6 GiB" in out.stdout


def test_eval_of_a_path_that_does_not_exist_says_what_to_give(tmp_path: Path) -> None:
    out = rlvr("eval", str(tmp_path / "nowhere"), "--data", "task://arithmetic?n=2")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{tmp_path / 'nowhere'} does not exist: give a checkpoint folder or a recipe file" in out.stderr


def test_overrides_may_follow_a_flag_and_stray_flags_are_refused() -> None:
    out = rlvr("train", "recipes/tiny.yaml", "--dry-run", "rollout.n=0")
    assert out.returncode == 2 and "rollout.n: got 0; must be greater than or equal to 1" in out.stderr
    out = rlvr("train", "recipes/tiny.yaml", "--dry-run", "rollout.n=4", "--bogus")
    assert out.returncode == 2 and "unrecognized arguments: --bogus\n" in out.stderr  # not the override


def test_eval_refuses_bad_flags_before_loading_anything(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")  # never read: every check below comes first
    data = ["--data", "task://arithmetic?n=2"]
    out = rlvr("eval", str(checkpoint), "--k", "0", *data)
    assert out.returncode == 2 and "argument --k: must be a finite number above 0, got 0" in out.stderr
    out = rlvr("eval", str(checkpoint), "--temperature", "-1", *data)
    assert out.returncode == 2 and "argument --temperature: must be 0 or above, got -1" in out.stderr
    out = rlvr("eval", str(checkpoint), "--temperature", "nan", *data)
    assert out.returncode == 2 and "argument --temperature: must be 0 or above, got nan" in out.stderr
    out = rlvr("eval", str(checkpoint), "rollout.n=3", *data)
    assert out.returncode == 2 and "overrides ['rollout.n=3'] apply to a recipe" in out.stderr
    out = rlvr("eval", str(checkpoint), "--verifier", "mathh", *data)
    assert out.returncode == 2 and "--verifier: unknown verifier 'mathh'" in out.stderr
    assert "Traceback" not in out.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('[{"question": "a", "answer": "1"},\n')
    out = rlvr("eval", str(checkpoint), "--data", str(broken))
    assert out.returncode == 2 and f"{broken}: not JSON: Expecting value (line 2, column 1)" in out.stderr
    out = rlvr("eval", "recipes/tiny.yaml", *data)
    assert out.returncode == 2 and "no model.path, no sft stage" in out.stderr


def test_verify_names_the_flag_that_is_wrong() -> None:
    out = rlvr("verify", "--sample", "{bad", "--reference", "1", "1")
    assert out.returncode == 2 and "--sample is not JSON" in out.stderr
    out = rlvr("verify", "--timeout", "0", "--reference", "1", "1")
    assert out.returncode == 2 and "argument --timeout: must be a finite number above 0" in out.stderr
    out = rlvr("verify", "--reference", " ", "1")
    assert out.returncode == 2 and "--reference is empty" in out.stderr
    out = rlvr("verify", "--timeout", "inf", "--reference", "1", "1")
    assert out.returncode == 2 and "argument --timeout: must be a finite number above 0" in out.stderr
    out = rlvr("verify", "--sample", "[1, 2]", "--reference", "1", "1")
    assert out.returncode == 2 and "--sample must be a JSON object" in out.stderr


def test_verify_runs_a_plugin_under_the_pool_limits() -> None:
    """`rlvr verify` runs the verifier in a worker process, as training does: a plug-in that hangs past the
    soft limit (signals blocked, so only the hard kill ends it) or kills its process gives a status."""
    plugin = (
        "verify",
        "--verifier",
        "tests.verifier_fixtures:MisbehavingVerifier",
        "--reference",
        "x",
        "--json",
    )
    hung = rlvr(*plugin, "--timeout", "0.5", "stuck:60", PYTHONPATH=str(REPO))
    assert hung.returncode == 0, hung.stderr
    assert json.loads(hung.stdout)["status"] == "timeout"
    died = rlvr(*plugin, "exit:", PYTHONPATH=str(REPO))
    assert died.returncode == 0, died.stderr
    assert json.loads(died.stdout)["status"] == "error"
    broken = rlvr(
        "verify",
        "--verifier",
        "tests.verifier_fixtures:BrokenInitVerifier",
        "--reference",
        "1",
        "1",
        PYTHONPATH=str(REPO),
    )
    assert broken.returncode == 2 and "this verifier cannot be built" in broken.stderr
    assert "Traceback" not in broken.stderr
    dies = rlvr(
        "verify",
        "--verifier",
        "tests.verifier_fixtures:DyingInitVerifier",
        "--reference",
        "1",
        "1",
        PYTHONPATH=str(REPO),
    )
    assert dies.returncode == 2 and "died while starting" in dies.stderr and "Traceback" not in dies.stderr
