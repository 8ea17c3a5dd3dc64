"""Where rlvr meets Ray: the one place that starts or joins a cluster, and the local head `make demo` and the
tests run jobs on.

`ensure_ray(num_cpus)` joins the cluster of a Ray job (or `RAY_ADDRESS`) and otherwise starts a private
instance for this process; `check_resources` refuses a recipe whose actors the cluster cannot place
(instead of waiting forever); `local_head` runs `ray start --head` on free ports for jobs submitted through
the Jobs API.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray


class ClusterError(RuntimeError):
    """A Ray head could not be started, or the cluster cannot hold what a run asks for."""


def ensure_ray(num_cpus: float | None = None) -> bool:
    """Joins the running cluster (inside a Ray job, or with RAY_ADDRESS set), else starts a private Ray with
    at least `num_cpus` CPUs (actors take turns, so a 2-core machine may run more actors than cores).
    Returns True when this call started or joined Ray (the caller then owns the `ray.shutdown`)."""
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return True
    cpus = max(os.cpu_count() or 1, math.ceil(num_cpus or 0))
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=True)
    return True


@contextmanager
def ray_session(num_cpus: float | None = None) -> Iterator[None]:
    """`ensure_ray` for a block: Ray is shut down after it only if the block started it."""
    started = ensure_ray(num_cpus)
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
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextmanager
def local_head(env: dict[str, str], num_cpus: int = 4) -> Iterator[str]:
    """`ray start --head --block` on free ports and a fresh temp dir; yields its Jobs API address.

    Its own ports and temp dir keep it apart from any other Ray on the machine; leaving the block sends
    SIGTERM to that `ray start` only (which stops what it started) rather than `ray stop`, which would stop
    every Ray on the machine. `env` is the head's environment: the jobs' `rlvr` is looked up on its PATH.
    """
    flags = [
        "--port",
        "--dashboard-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--ray-client-server-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
        "--node-manager-port",
        "--object-manager-port",
    ]
    ports = dict(zip(flags, free_ports(len(flags)), strict=True))
    temp_dir = tempfile.mkdtemp(prefix="rlvr-ray-")
    log_path = Path(temp_dir) / "ray_start.log"
    cmd = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        f"--num-cpus={num_cpus}",
        "--disable-usage-stats",
    ]
    cmd += [f"--temp-dir={temp_dir}", "--include-dashboard=true", *(f"{k}={v}" for k, v in ports.items())]
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    with log_path.open("w") as log:
        head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if head.poll() is not None:
                raise ClusterError(f"ray start exited {head.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2).close()
                break
            except urllib.error.HTTPError:  # up, but asks for a token
                break
            except OSError:
                if time.monotonic() > deadline:
                    tail = log_path.read_text()[-3000:]
                    raise ClusterError(f"no Jobs API at {address} after 60 s:\n{tail}") from None
                time.sleep(0.5)
        yield address
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
