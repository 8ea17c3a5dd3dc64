"""`rlvr submit`: the tiny recipe as a real Ray job on a local head; bad recipes fail before submitting.

The head is `ray start --head --block` in its own session, with its own temp dir and free ports, so it neither
collides with nor is found by other Ray instances on the machine (in-process `ray.init()` in other tests looks
in the default temp dir). Teardown sends SIGTERM to that `ray start` only, which stops the processes it
started; `ray stop` is not used because it kills every Ray process on the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlvr.cli import main
from rlvr.cluster import free_ports, local_head
from rlvr.submit import auth_headers, entrypoint, is_local_address, job_arguments

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = [
    "trainer.steps=1",
    "rollout.prompts_per_step=2",
    "rollout.n=2",
    "rollout.max_new_tokens=8",
    "verifier.workers=1",
    "trainer.wandb=false",
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env.update(
        RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", WANDB_MODE="offline", HF_HUB_OFFLINE="1"
    )
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # the job's entrypoint runs `rlvr`
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    with local_head(_env()) as address:
        yield address


@pytest.mark.slow
def test_submit_runs_the_tiny_recipe_as_a_ray_job(ray_head: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cmd = [str(BIN / "rlvr"), "submit", "recipes/tiny.yaml", f"run.output_dir={run_dir}", *TINY]
    proc = subprocess.run(
        [*cmd, "--address", ray_head], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "submitted job" in out and "SUCCEEDED" in out
    assert "step    1" in out  # the driver's progress line, streamed from the job's logs
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert (run_dir / "checkpoints/step_1/trainer_state.json").exists()


@pytest.mark.slow
def test_submit_to_a_token_auth_cluster(tmp_path: Path) -> None:
    """Ray's token auth: refused with a clear message without the token, accepted with it (either mode)."""
    token = "rlvr-test-token-0123456789abcdef"
    probe = "import sys; from rlvr.submit import connect; print(connect(sys.argv[1]).list_jobs())"
    home = {"HOME": str(tmp_path)}  # no ~/.ray/auth_token to fall back on
    with local_head(_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)) as address:
        without = _probe(probe, address, _env(**home))
        assert without.returncode != 0 and "set RAY_AUTH_MODE=token" in without.stderr
        for mode in ("token", ""):
            env = _env(RAY_AUTH_MODE=mode, RAY_AUTH_TOKEN=token, **home)
            if not mode:
                del env["RAY_AUTH_MODE"]
            accepted = _probe(probe, address, env)
            assert accepted.returncode == 0, accepted.stderr[-3000:]


def _probe(code: str, address: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, address], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_bad_recipe_field_fails_before_submitting(capsys: pytest.CaptureFixture[str]) -> None:
    (closed,) = free_ports(1)  # nothing listens there: a submit attempt would fail differently
    code = main(
        ["submit", str(REPO / "recipes/tiny.yaml"), "rollout.nn=3", "--address", f"127.0.0.1:{closed}"]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert "rollout.nn" in err and "did you mean 'rollout.n'" in err
    assert "submitted" not in out and "uploading" not in out


def test_unreachable_cluster_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    (closed,) = free_ports(1)
    code = main(["submit", str(REPO / "recipes/tiny.yaml"), "--address", f"http://127.0.0.1:{closed}"])
    assert code == 2
    assert "cannot reach the Ray Jobs API" in capsys.readouterr().err


def test_job_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config, recipe, overrides = job_arguments(
        REPO / "recipes/tiny.yaml", ["rollout.n=2"], "http://127.0.0.1:8265"
    )
    assert recipe == "recipes/tiny.yaml" and config.rollout.n == 2
    assert overrides == ["rollout.n=2", f"run.output_dir={(REPO / 'runs/tiny').as_posix()}"]
    _, _, remote = job_arguments("recipes/tiny.yaml", [], "http://head.example:8265")
    assert remote == []  # a remote cluster keeps the recipe's relative run dir (with a note)
    assert entrypoint(recipe, ["a=b c"]) == "rlvr train recipes/tiny.yaml 'a=b c'"
    outside = tmp_path / "r.yaml"
    outside.write_text((REPO / "recipes/tiny.yaml").read_text())
    with pytest.raises(Exception, match="outside the working directory"):
        job_arguments(outside, [], "http://127.0.0.1:8265")
    assert is_local_address("127.0.0.1:6379") and not is_local_address("ray://head:10001")


def test_auth_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert auth_headers() == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray/auth_token").write_text("abc\n")
    assert auth_headers() == {"Authorization": "Bearer abc"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "xyz")
    assert auth_headers() == {"Authorization": "Bearer xyz"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert auth_headers() == {}
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert auth_headers() == {}  # Ray's client sends the token itself in token mode
