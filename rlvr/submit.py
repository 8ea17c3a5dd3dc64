"""`rlvr submit`: run `rlvr train RECIPE ...` as a Ray job through the Ray Jobs SDK.

The same as `ray job submit --working-dir . --runtime-env-json '{"excludes": [...]}' -- rlvr train ...`,
plus: the recipe is validated locally before anything is uploaded, the job's logs are streamed, and the exit
code follows the job (0 when it SUCCEEDED, 1 otherwise).

Authentication: the head says whether it wants a token (its public /api/authentication_mode). One that does
gets the token found here as Ray looks for it (`RAY_AUTH_TOKEN`, the file named by `RAY_AUTH_TOKEN_PATH`,
`~/.ray/auth_token`); without one, nothing is uploaded and the message says where to put it. A head without
auth gets no token, and one beyond loopback is named in a warning. Credential files never travel with the
upload (CREDENTIAL_EXCLUDES).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rlvr.config import RecipeConfig, load_recipe

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
ADDRESS_ENV_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
# Never uploaded with the working directory (gitignore-style patterns, relative to it).
EXCLUDES = [
    ".venv",
    "runs",
    "checkpoints",
    "wandb",
    ".git",
    ".dev",
    "*.pt",
    "*.safetensors",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
]
# Credentials, wherever they sit in the working directory, never leave this machine with the upload: dotenv
# files, netrc and other tool logins, SSH and cloud key folders, private keys and certificates, Ray tokens.
# wandb's settings (wandb/settings) go with the `wandb` folder above.
CREDENTIAL_EXCLUDES = [
    ".env",
    ".env.*",
    ".envrc",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".pypirc",
    ".ssh",
    ".aws",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "auth_token",
]
# Set on the job's driver when set here: offline switches and logging modes, never secrets.
FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "WANDB_MODE",
    "TOKENIZERS_PARALLELISM",
    "VLLM_ENABLE_V1_MULTIPROCESSING",
)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
TOKEN_SOURCES = (
    "RAY_AUTH_TOKEN=<token>, or a file readable only by you named by RAY_AUTH_TOKEN_PATH, or "
    "~/.ray/auth_token (`ray get-auth-token` prints the token on the head; see docs/cluster.md, "
    "'Token authentication')"
)
NO_TOKEN = (
    "the Ray cluster at {address} asks for a token (token authentication) and none was found here; nothing "
    "was uploaded. Provide the cluster's token as " + TOKEN_SOURCES
)
AUTH_HINT = (
    "the Ray cluster at {address} rejected the request ({reason}).\nProvide its token as " + TOKEN_SOURCES
)
NO_AUTH_WARNING = (
    "warning: the Ray cluster at {address} has token authentication off: anyone who can reach it can run "
    "code as you there. Restart it with RAY_AUTH_MODE=token (docs/cluster.md, 'Token authentication')."
)


class SubmitError(RuntimeError):
    """The job could not be submitted (cluster unreachable, authentication, recipe outside working dir)."""


def default_address() -> str:
    """The Jobs API address: `RAY_API_SERVER_ADDRESS`, else `RAY_ADDRESS`, else the local dashboard."""
    for name in ADDRESS_ENV_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return DEFAULT_ADDRESS


def is_local_address(address: str) -> bool:
    """True when `address` (http://host:port or host:port) names this machine by loopback name."""
    host = urlparse(address if "://" in address else f"http://{address}").hostname
    return host in LOCAL_HOSTS


def runtime_env(working_dir: str | Path = ".") -> dict[str, Any]:
    """The job's runtime_env: the working directory minus EXCLUDES and CREDENTIAL_EXCLUDES, and the
    FORWARDED_ENV values set here."""
    env: dict[str, Any] = {"working_dir": str(working_dir), "excludes": [*EXCLUDES, *CREDENTIAL_EXCLUDES]}
    env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if env_vars:
        env["env_vars"] = env_vars
    return env


def entrypoint(recipe: str, overrides: Sequence[str], command: str = "train") -> str:
    """The shell command the job runs on the cluster: `rlvr train` (or `rlvr sft`) RECIPE OVERRIDES."""
    if command not in ("train", "sft"):
        raise ValueError(f"a job runs `rlvr train` or `rlvr sft`, not {command!r}")
    return shlex.join(["rlvr", command, recipe, *overrides])


def local_token() -> str | None:
    """The cluster token held here, looked up in Ray's order: `RAY_AUTH_TOKEN`, the file `RAY_AUTH_TOKEN_PATH`
    names, `~/.ray/auth_token`; None when there is none. Raises SubmitError when RAY_AUTH_TOKEN_PATH names a
    missing or empty file (Ray refuses that too)."""
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named) if named else Path.home() / ".ray" / "auth_token"
    token = path.read_text().strip() if path.is_file() else ""
    if named and not token:
        raise SubmitError(f"RAY_AUTH_TOKEN_PATH is set but {named} is missing or empty")
    return token or None


def head_auth_mode(address: str, timeout_s: float = 10.0) -> str | None:
    """What the Jobs API at `address` says of its authentication: "token", "disabled", or None when it does
    not say (a Ray without the endpoint, or an address that is not http(s)). Raises SubmitError when nothing
    answers there."""
    url = address if "://" in address else f"http://{address}"
    if urlparse(url).scheme not in ("http", "https"):
        return None
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/authentication_mode", timeout=timeout_s) as reply:
            return json.load(reply).get("authentication_mode")
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError) as exc:
        raise SubmitError(
            f"cannot reach the Ray Jobs API at {address} ({exc}); start a head with `ray start --head` "
            "or pass --address / set RAY_ADDRESS to the cluster's dashboard (http://HEAD:8265)"
        ) from None


def auth_headers(address: str, mode: str | None, token: str | None) -> dict[str, str]:
    """The headers for the head at `address`, which reported `mode` (`head_auth_mode`).

    A head that asks for a token gets `token`; SubmitError (NO_TOKEN, saying how to provide one) when there is
    none. A head without auth gets no token, with NO_AUTH_WARNING on stderr when it is beyond loopback. A head
    that does not say gets the token if there is one."""
    if mode == "token" and not token:
        raise SubmitError(NO_TOKEN.format(address=address))
    if mode == "disabled":
        if not is_local_address(address):
            print(NO_AUTH_WARNING.format(address=address), file=sys.stderr)
        return {}
    return {"Authorization": f"Bearer {token}"} if token else {}


def job_arguments(
    recipe: str | Path, overrides: Sequence[str], address: str, working_dir: str | Path = "."
) -> tuple[RecipeConfig, str, list[str]]:
    """Validate the recipe here; return it, its path relative to `working_dir` and the overrides to send.

    Raises RecipeError for a bad recipe and SubmitError for a recipe outside `working_dir`. On a local head a
    relative run directory is made absolute, so outputs land here as with `rlvr train`, not in the job's copy,
    and so are relative input paths that exist here (`input_overrides`): the upload leaves out checkpoints,
    weights and git-ignored folders such as `data/`, so the job's copy would not have them.
    """
    config = load_recipe(recipe, overrides)
    root = Path(working_dir).resolve()
    try:
        relative = Path(recipe).resolve().relative_to(root).as_posix()
    except ValueError:
        raise SubmitError(f"recipe {str(recipe)!r} is outside the working directory {str(root)!r}") from None
    overrides = list(overrides)
    if is_local_address(address):
        overrides += input_overrides(config, root)
    if not config.run.dir.is_absolute():
        if is_local_address(address):
            overrides.append(f"run.output_dir={(root / config.run.dir).as_posix()}")
        else:
            print(
                f"note: run directory {config.run.dir} is relative: it is created inside the job's copy of "
                "the working directory on the cluster; set run.output_dir to shared storage to keep it"
            )
    return config, relative, overrides


def input_overrides(config: RecipeConfig, root: Path) -> list[str]:
    """`key=/absolute/path` for each relative model, tokenizer and prompt-file path of `config` that exists
    under `root` (the job on a local head then reads this machine's files, as `rlvr train` would)."""

    def local(path: str | None) -> str | None:
        if path is None or "://" in path or Path(path).is_absolute() or not (root / path).exists():
            return None
        return (root / path).as_posix()

    out = [
        f"model.{key}={path}" for key in ("path", "tokenizer") if (path := local(getattr(config.model, key)))
    ]
    for key in ("train_files", "eval_files"):
        files = getattr(config.data, key)
        if any(local(f) for f in files):
            out.append(f"data.{key}={json.dumps([local(f) or f for f in files])}")
    if local(config.sft.data):
        out.append(f"sft.data={local(config.sft.data)}")
    return out


@contextmanager
def _address_env_cleared() -> Iterator[None]:
    """Ray's client lets RAY_ADDRESS override its address argument; an explicit address wins here."""
    saved = {k: os.environ.pop(k) for k in ADDRESS_ENV_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(address: str) -> Any:
    """A JobSubmissionClient for `address`, with the token if the head asks for one; SubmitError when it is
    unreachable, asks for a token there is none of here, or refuses the one sent."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    headers = auth_headers(address, head_auth_mode(address), local_token())
    try:
        with _address_env_cleared():
            return JobSubmissionClient(address, headers=headers)
    except AuthenticationError as exc:
        raise SubmitError(AUTH_HINT.format(address=address, reason=str(exc).splitlines()[0])) from None
    except ConnectionError as exc:
        raise SubmitError(f"cannot reach the Ray Jobs API at {address} ({exc})") from None


def _submit_job(client: Any, command: str, env: dict[str, Any], patience_s: float = 45.0) -> str:
    """client.submit_job, retried while a just-started head has no job agent yet."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return client.submit_job(entrypoint=command, runtime_env=env)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            print("the cluster's job agent is not up yet; retrying", flush=True)
            time.sleep(2.0)


class _DropPackagingNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "is now ignored by default" not in message and "Ignoring upload to cluster" not in message


def _quiet_packaging_logs() -> None:
    """Ray's SDK logs every ignored .gitignore and default exclude; keep the rest of its messages."""
    sources = (
        "dashboard.modules.dashboard_sdk",
        "_private.runtime_env.working_dir",
        "_private.runtime_env.packaging",
    )
    for name in (f"ray.{s}" for s in sources):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPackagingNoise) for f in logger.filters):
            logger.addFilter(_DropPackagingNoise())


async def _tail(client: Any, job_id: str) -> None:
    async for chunk in client.tail_job_logs(job_id):
        print(chunk, end="", flush=True)


def wait_for(client: Any, job_id: str, poll_s: float = 1.0) -> Any:
    """Stream the job's logs until it ends; returns its final JobStatus."""
    from ray.job_submission import JobStatus

    try:
        asyncio.run(_tail(client, job_id))
    except RuntimeError as exc:  # the log socket closed early; the job itself may still be running
        print(f"warning: log stream ended early ({exc}); waiting for the job", file=sys.stderr)
    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    while (status := client.get_job_status(job_id)) not in terminal:
        time.sleep(poll_s)
    return status


def submit(
    recipe: str | Path,
    overrides: Sequence[str] = (),
    address: str | None = None,
    wait: bool = True,
    working_dir: str | Path = ".",
    command: str = "train",
) -> int:
    """Submit `rlvr train RECIPE OVERRIDES` (or `rlvr sft`) as a Ray job; with `wait`, stream logs, 0 iff it
    SUCCEEDED."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobStatus

    address = address or default_address()
    _, recipe_rel, job_overrides = job_arguments(recipe, overrides, address, working_dir)
    client = connect(address)
    command = entrypoint(recipe_rel, job_overrides, command)
    _quiet_packaging_logs()
    print(
        f"uploading {Path(working_dir).resolve()} (without {', '.join(EXCLUDES)}; "
        f"nor credential files: {', '.join(CREDENTIAL_EXCLUDES)})",
        flush=True,
    )
    try:
        job_id = _submit_job(client, command, runtime_env(working_dir))
    except AuthenticationError as exc:
        raise SubmitError(AUTH_HINT.format(address=address, reason=str(exc).splitlines()[0])) from None
    except RuntimeError as exc:
        hint = ""
        if "No available agent" in str(exc):
            hint = (
                "\nthe head's dashboard agent is not serving; see dashboard_agent.log in the head's session "
                "logs (a port taken by another Ray instance on that machine? pass free ports to `ray start`, "
                "e.g. --dashboard-agent-listen-port)"
            )
        raise SubmitError(f"the cluster at {address} refused the job: {exc}{hint}") from None
    print(f"submitted job {job_id} to {address}: {command}", flush=True)
    if not wait:
        print(f"follow it with: ray job logs --follow --address {address} {job_id}")
        return 0
    try:
        status = wait_for(client, job_id)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; the job keeps running (stop it: ray job stop --address {address} {job_id})"
        )
        return 130
    info = client.get_job_info(job_id)
    message = f": {info.message.splitlines()[0]}" if info.message else ""
    print(f"job {job_id} {status.value}{message}", flush=True)
    return 0 if status == JobStatus.SUCCEEDED else 1
