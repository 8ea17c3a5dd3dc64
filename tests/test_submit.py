"""`rlvr submit`: the tiny recipe as a real Ray job on a local head; bad recipes fail before submitting; a
head that asks for a token gets it or nothing is uploaded; credential files stay out of the upload.

The head is `ray start --head --block` in its own session, with its own temp dir, free ports and token (on
loopback), so it neither collides with nor is found by other Ray instances on the machine. Teardown sends
SIGTERM to that `ray start` only, which stops the processes it started; `ray stop` is not used because it
kills every Ray process on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlvr import submit as submit_module
from rlvr.cli import main
from rlvr.cluster import CLIENT_VARS, LocalHead, free_ports, local_head
from rlvr.submit import (
    CREDENTIAL_EXCLUDES,
    SubmitError,
    auth_headers,
    entrypoint,
    is_local_address,
    job_arguments,
    local_token,
    runtime_env,
)

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


RAY_CLIENT_VARS = (*CLIENT_VARS, "RAY_AUTH_MODE")  # what a shell may have set for another cluster


def _env(**extra: str) -> dict[str, str]:
    """This environment without any Ray address or token of the caller's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_CLIENT_VARS}
    env.update(RAY_USAGE_STATS_ENABLED="0", WANDB_MODE="offline", HF_HUB_OFFLINE="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # the job's entrypoint runs `rlvr`
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def ray_head() -> Iterator[LocalHead]:
    with local_head(_env()) as head:
        yield head


@pytest.mark.slow
def test_submit_runs_the_tiny_recipe_as_a_ray_job(ray_head: LocalHead, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cmd = [str(BIN / "rlvr"), "submit", "recipes/tiny.yaml", f"run.output_dir={run_dir}", *TINY]
    env = _env(RAY_AUTH_TOKEN_PATH=str(ray_head.token_path), HOME=str(tmp_path))
    proc = subprocess.run(
        [*cmd, "--address", ray_head.address], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "submitted job" in out and "SUCCEEDED" in out
    assert "step    1" in out  # the driver's progress line, streamed from the job's logs
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert (run_dir / "checkpoints/step_1/trainer_state.json").exists()


@pytest.mark.slow
def test_submit_to_a_token_auth_cluster(ray_head: LocalHead, tmp_path: Path) -> None:
    """The head asks for its token: refused before any upload without it, with a message saying where to put
    it; refused with a wrong one; accepted from RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH."""
    assert ray_head.token_path is not None
    token = ray_head.token_path.read_text()
    probe = "import sys; from rlvr.submit import connect; print(connect(sys.argv[1]).list_jobs())"
    home = {"HOME": str(tmp_path)}  # no ~/.ray/auth_token to fall back on
    without = _probe(probe, ray_head.address, _env(**home))
    assert without.returncode != 0 and "asks for a token" in without.stderr
    assert "RAY_AUTH_TOKEN_PATH" in without.stderr and "ray get-auth-token" in without.stderr
    wrong = _probe(probe, ray_head.address, _env(RAY_AUTH_TOKEN="0" * 64, **home))
    assert wrong.returncode != 0 and "rejected the request" in wrong.stderr
    for given in ({"RAY_AUTH_TOKEN": token}, {"RAY_AUTH_TOKEN_PATH": str(ray_head.token_path)}):
        accepted = _probe(probe, ray_head.address, _env(**given, **home))
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
    prompts = json.dumps([(REPO / "recipes/data/tiny_prompts.jsonl").as_posix()])
    assert overrides == [
        "rollout.n=2",
        f"data.train_files={prompts}",  # the job reads this machine's file, as `rlvr train` would
        f"run.output_dir={(REPO / 'runs/tiny').as_posix()}",
    ]
    _, _, remote = job_arguments("recipes/tiny.yaml", [], "http://head.example:8265")
    assert remote == []  # a remote cluster keeps the recipe's relative run dir (with a note)
    assert entrypoint(recipe, ["a=b c"]) == "rlvr train recipes/tiny.yaml 'a=b c'"
    outside = tmp_path / "r.yaml"
    outside.write_text((REPO / "recipes/tiny.yaml").read_text())
    with pytest.raises(Exception, match="outside the working directory"):
        job_arguments(outside, [], "http://127.0.0.1:8265")
    assert is_local_address("127.0.0.1:6379") and not is_local_address("ray://head:10001")


def test_local_inputs_the_upload_leaves_out_are_passed_as_absolute_paths(tmp_path: Path) -> None:
    """checkpoints/ and git-ignored data/ are not uploaded: on a local head the job reads them in place."""
    (tmp_path / "checkpoints/m").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/p.jsonl").write_text('{"prompt": "1+1", "answer": "2"}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {path: checkpoints/m}\n"
        "data: {train_files: [data/p.jsonl, 'task://arithmetic?n=4'], eval_files: [data/missing.jsonl]}\n"
    )
    _, _, overrides = job_arguments(recipe, [], "http://127.0.0.1:8265", working_dir=tmp_path)
    files = json.dumps([(tmp_path / "data/p.jsonl").as_posix(), "task://arithmetic?n=4"])
    assert f"model.path={(tmp_path / 'checkpoints/m').as_posix()}" in overrides
    assert f"data.train_files={files}" in overrides
    assert not any(o.startswith("data.eval_files") for o in overrides)  # not here: left for the cluster
    _, _, remote = job_arguments(recipe, [], "http://head.example:8265", working_dir=tmp_path)
    assert remote == []


def test_local_token_is_looked_up_in_rays_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert local_token() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray/auth_token").write_text("home\n")
    assert local_token() == "home"
    (tmp_path / "token").write_text("file\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    assert local_token() == "file"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env")
    assert local_token() == "env"
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(SubmitError, match="missing or empty"):
        local_token()


def test_auth_headers_follow_what_the_head_asks(capsys: pytest.CaptureFixture[str]) -> None:
    """The decision `rlvr submit` makes from the head's /api/authentication_mode (tested here without a head
    beyond loopback: binding one to this machine's public address would expose it to the network)."""
    remote, local = "http://head.example:8265", "http://127.0.0.1:8265"
    for address in (remote, local):
        with pytest.raises(SubmitError, match="asks for a token") as refused:
            auth_headers(address, "token", None)
        assert "RAY_AUTH_TOKEN" in str(refused.value) and "ray get-auth-token" in str(refused.value)
        assert auth_headers(address, "token", "t") == {"Authorization": "Bearer t"}
    assert auth_headers(local, "disabled", "t") == {}  # a token is not sent where nothing checks it
    assert capsys.readouterr().err == ""
    assert auth_headers(remote, "disabled", "t") == {}
    assert "token authentication off" in capsys.readouterr().err
    assert auth_headers(remote, None, "t") == {"Authorization": "Bearer t"}  # a Ray that does not say
    assert auth_headers(remote, None, None) == {}


def test_submit_to_a_remote_token_head_without_a_token_uploads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    asked: list[str] = []
    monkeypatch.setattr(submit_module, "head_auth_mode", lambda address: asked.append(address) or "token")
    code = main(["submit", str(REPO / "recipes/tiny.yaml"), "--address", "http://head.example:8265"])
    out, err = capsys.readouterr()
    assert asked == ["http://head.example:8265"] and code == 2
    assert "asks for a token" in err and "nothing was uploaded" in err
    assert "uploading" not in out and "submitted" not in out


def test_credential_files_stay_out_of_the_upload(tmp_path: Path) -> None:
    """Ray's own packaging of the working directory, with the runtime_env `rlvr submit` sends."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    secrets = [
        ".env",
        ".env.local",
        ".netrc",
        "wandb/settings",
        "keys/id_ed25519",
        "certs/server.pem",
        ".ray/auth_token",
    ]
    kept = ["recipes/tiny.yaml", "rlvr/train.py", "environment.md"]
    for name in secrets + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    env = runtime_env(tmp_path)
    assert set(CREDENTIAL_EXCLUDES) <= set(env["excludes"])
    uploaded: list[str] = []
    _dir_travel(
        tmp_path,
        [_get_excludes(tmp_path, env["excludes"])],
        lambda p: uploaded.append(p.relative_to(tmp_path).as_posix()) if p.is_file() else None,
        include_gitignore=True,
    )
    assert sorted(uploaded) == sorted(kept)
