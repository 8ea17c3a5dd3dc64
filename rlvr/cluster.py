"""Where rlvr meets Ray: the one place that starts or joins a cluster, and the local head `make demo` and the
tests run jobs on.

`ensure_ray(num_cpus)` joins the cluster of a Ray job (or `RAY_ADDRESS`) and otherwise starts a private
instance for this process; `check_resources` refuses a recipe whose actors the cluster cannot place
(instead of waiting forever); `local_head` runs `ray start --head` on free ports for jobs submitted through
the Jobs API.

Every instance started here serves this machine only and keeps Ray's token authentication on. Its node IP is
127.0.0.1, so the GCS, raylet, object manager, agents, workers and dashboard listen on loopback alone (Ray's
single-machine mode, its default on macOS and Windows); loopback keeps other machines out. A fresh token, in
a 0600 file inside a 0700 temp dir of its own (not Ray's temp dir, which Ray makes world-writable), reaches
every process of the instance through `RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN_PATH`; the token keeps out
other users of this machine. `RAY_AUTH_MODE=disabled` in the environment opts out of the token, never out of
loopback. `~/.ray/auth_token` is neither read nor written.
"""

from __future__ import annotations

import atexit
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ray

LOOPBACK = "127.0.0.1"
# Ray starts workers at niceness 15 so its own daemons win the CPU. rlvr's actors are the work: at 15 a
# learner on a 2-core node loses its core to any nice-0 process (the driver, log monitor, a memory poller),
# and its other thread waits at the next barrier. Instances started here run them at 0, as Ray's job
# drivers run.
WORKER_NICENESS = 0
# Ray's switch for "multi-node clusters on this OS". Off, Ray keeps a 127.0.0.1 node IP instead of rewriting
# it to the machine's address, and its servers bind to loopback. Read once, when a process imports ray.
SINGLE_MACHINE_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# The caller's view of a cluster to join or authenticate to; an instance started here must not inherit it.
CLIENT_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
TOKEN_FILE = "auth_token"

_process_token: Path | None = None


class ClusterError(RuntimeError):
    """A Ray head could not be started, or the cluster cannot hold what a run asks for."""


def auth_opted_out(env: Mapping[str, str]) -> bool:
    """True when `env` sets RAY_AUTH_MODE=disabled (the one way to start an instance without a token)."""
    return env.get("RAY_AUTH_MODE", "").strip().lower() == "disabled"


def write_token(directory: Path) -> Path:
    """A new 256-bit token (Ray's own format: 64 hex digits) in `directory`/auth_token, mode 0600.

    Raises FileExistsError if the file exists (a token is never overwritten)."""
    path = Path(directory) / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path


def secured_env(base: Mapping[str, str], token_path: Path | None) -> dict[str, str]:
    """`base` for the processes of an instance started here: token mode reading `token_path` (None: auth
    disabled), single-machine mode, and none of the caller's cluster address or token variables
    (RAY_AUTH_TOKEN would win over the file)."""
    env = {k: v for k, v in base.items() if k not in CLIENT_VARS}
    env[SINGLE_MACHINE_VAR] = "0"
    if token_path is None:
        env["RAY_AUTH_MODE"] = "disabled"
    else:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path))
    return env


def _token_for_this_process() -> Path:
    """One token for the private instances this process starts, removed when it exits."""
    global _process_token
    if _process_token is None:
        directory = Path(tempfile.mkdtemp(prefix="rlvr-auth-"))  # 0700
        atexit.register(shutil.rmtree, directory, True)  # registered before ray.init: runs after its shutdown
        _process_token = write_token(directory)
    return _process_token


@contextmanager
def _single_machine_driver() -> Iterator[None]:
    """Single-machine mode for the instance `ray.init` starts in this block: the Ray processes it spawns read
    the variable; this process read it when it imported ray, so its copy is switched for the block."""
    from ray._private import ray_constants

    saved_var, saved_flag = os.environ.get(SINGLE_MACHINE_VAR), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_var is None:
            os.environ.pop(SINGLE_MACHINE_VAR, None)
        else:
            os.environ[SINGLE_MACHINE_VAR] = saved_var


def _start_private(num_cpus: int, log_to_driver: bool) -> None:
    """`ray.init` of a new loopback-only instance with this process's token (see the module docstring).

    The auth variables stay in os.environ while it runs: this driver's Ray client reads them too."""
    from ray._raylet import AuthenticationTokenLoader, Config

    token = None if auth_opted_out(os.environ) else _token_for_this_process()
    env = secured_env(os.environ, token)
    del env[SINGLE_MACHINE_VAR]  # only while ray.init runs (a later ray.init may join a real cluster)
    for name in set(os.environ) - set(env):
        del os.environ[name]
    os.environ.update(env)
    Config.initialize("")  # this process read RAY_AUTH_MODE at `import ray` (Ray's own opt-in does the same)
    AuthenticationTokenLoader.instance().reset_cache()  # a token cached for another cluster is stale
    with _single_machine_driver():
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=log_to_driver,
            _node_ip_address=LOOPBACK,
            _system_config={"worker_niceness": WORKER_NICENESS},
        )
    if (node_ip := ray.util.get_node_ip_address()) != LOOPBACK:
        ray.shutdown()
        raise ClusterError(f"Ray put the private instance's node on {node_ip}, not {LOOPBACK}; stopped it")


def ensure_ray(num_cpus: float | None = None, log_to_driver: bool = True) -> bool:
    """Joins the running cluster (inside a Ray job, or with RAY_ADDRESS set), else starts a private Ray with
    at least `num_cpus` CPUs (actors take turns, so a 2-core machine may run more actors than cores), on
    loopback and with token auth (module docstring).

    Returns True when this call started or joined Ray (the caller then owns the `ray.shutdown`). Raises
    ClusterError if Ray did not keep a private instance on loopback."""
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return True
    _start_private(max(os.cpu_count() or 1, math.ceil(num_cpus or 0)), log_to_driver)
    return True


@contextmanager
def ray_session(num_cpus: float | None = None, log_to_driver: bool = True) -> Iterator[None]:
    """`ensure_ray` for a block: Ray is shut down after it only if the block started it."""
    started = ensure_ray(num_cpus, log_to_driver)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def check_resources(need: dict[str, float], hint: str) -> None:
    """ValueError when the cluster has less of a resource than `need` (names both; `hint` says what to
    lower)."""
    have = ray.cluster_resources()
    short = {k: v for k, v in need.items() if v > have.get(k, 0.0)}
    if short:
        wanted = ", ".join(f"{v:g} {k}" for k, v in short.items())
        has = ", ".join(f"{have.get(k, 0.0):g} {k}" for k in short)
        raise ValueError(f"the run's actors need {wanted} but the Ray cluster has {has}: {hint}")


def free_ports(n: int) -> list[int]:
    """n ports free on 127.0.0.1 right now (the OS picks them)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind((LOOPBACK, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass(frozen=True)
class LocalHead:
    """A head started by `local_head`."""

    address: str  # its Jobs API (dashboard), http://127.0.0.1:PORT
    gcs_address: str  # 127.0.0.1:PORT, for `ray.init(address=...)`
    token_path: Path | None  # its token file (mode 0600); None when started with RAY_AUTH_MODE=disabled
    pid: int  # the `ray start --block` process; it leads the session that holds every process of the head

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header its Jobs API asks for ({} without a token)."""
        return {"Authorization": f"Bearer {self.token_path.read_text()}"} if self.token_path else {}


# `ray start` port flags, each given a free port so that the head neither collides with nor is found by
# another Ray instance on the machine.
PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--ray-client-server-port",  # `ray start` insists on this server; it binds loopback and checks the token
    "--metrics-export-port",
    "--runtime-env-agent-port",
    "--node-manager-port",
    "--object-manager-port",
)
# Metrics ports the dashboard and the autoscaler monitor take from the environment (fixed defaults otherwise).
PORT_VARS = ("DASHBOARD_METRIC_PORT", "AUTOSCALER_METRIC_PORT")


def _head_command(temp_dir: str, num_cpus: int, ports: Mapping[str, int]) -> list[str]:
    return [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        f"--num-cpus={num_cpus}",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        f"--node-ip-address={LOOPBACK}",
        "--include-dashboard=true",
        f"--dashboard-host={LOOPBACK}",
        *(f"{flag}={ports[flag]}" for flag in PORT_FLAGS),
    ]


def _wait_for_jobs_api(head: subprocess.Popen[bytes], started: LocalHead, log_path: Path) -> None:
    """Until the head answers an authenticated /api/version; ClusterError if it exits or 60 s pass."""
    request = urllib.request.Request(f"{started.address}/api/version", headers=started.auth_headers())
    deadline = time.monotonic() + 60
    while True:
        if head.poll() is not None:
            raise ClusterError(f"ray start exited {head.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(request, timeout=2).close()
            return
        except (OSError, urllib.error.HTTPError):
            if time.monotonic() > deadline:
                tail = log_path.read_text()[-3000:]
                raise ClusterError(f"no Jobs API at {started.address} after 60 s:\n{tail}") from None
            time.sleep(0.5)


@contextmanager
def local_head(env: Mapping[str, str], num_cpus: int = 4) -> Iterator[LocalHead]:
    """`ray start --head --block` on loopback, free ports, a fresh temp dir and a fresh token; yields it.

    `env` is the head's environment (the jobs' `rlvr` is looked up on its PATH); `secured_env` adds the token
    and single-machine mode. Leaving the block sends SIGTERM to that `ray start` only (it stops what it
    started) rather than `ray stop`, which would stop every Ray on the machine, and removes the temp dir and
    the token. Raises ClusterError if the head exits or its Jobs API does not answer within 60 s.
    """
    ports = dict(zip((*PORT_FLAGS, *PORT_VARS), free_ports(len(PORT_FLAGS) + len(PORT_VARS)), strict=True))
    temp_dir = tempfile.mkdtemp(prefix="rlvr-ray-")  # Ray makes it world-writable (0777) when it starts
    token_dir = tempfile.mkdtemp(prefix="rlvr-auth-")  # so the token lives apart, in a 0700 dir of its own
    token_path = None if auth_opted_out(env) else write_token(Path(token_dir))
    head_env = secured_env(env, token_path) | {var: str(ports[var]) for var in PORT_VARS}
    head_env["RAY_worker_niceness"] = str(WORKER_NICENESS)  # Ray's config from the environment
    log_path = Path(temp_dir) / "ray_start.log"
    with log_path.open("w") as log:
        head = subprocess.Popen(
            _head_command(temp_dir, num_cpus, ports),
            env=head_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address, gcs_address = f"http://{LOOPBACK}:{ports['--dashboard-port']}", f"{LOOPBACK}:{ports['--port']}"
    started = LocalHead(address, gcs_address, token_path, head.pid)
    try:
        _wait_for_jobs_api(head, started, log_path)
        yield started
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(token_dir, ignore_errors=True)
