"""Nobody else gets into the Ray instances rlvr starts: the demo's head (`local_head`, with a job running on
it) and `rlvr train`'s private instance (`ensure_ray`) listen on loopback alone, and a client without their
token is refused by the GCS (gRPC) and the Jobs API (HTTP).

Every listening socket of every process each one started is looked at (psutil), not a list of known ports:
GCS, raylet (node manager, object manager), dashboard and its metrics, dashboard agent (HTTP, gRPC, metrics
export), runtime-env agent, Ray client server, autoscaler monitor, job supervisor, job driver and workers.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from rlvr.cluster import CLIENT_VARS, LocalHead, auth_opted_out, local_head, secured_env, write_token

REPO = Path(__file__).resolve().parents[1]
RAY_CLIENT_VARS = (*CLIENT_VARS, "RAY_AUTH_MODE")  # what a shell may have set for another cluster
OPT_OUT_ADVICE = "Set RAY_AUTH_MODE=disabled to opt out"  # Ray's warning when it turns token auth on itself
JOB = """
import ray, time
ray.init()
@ray.remote
class Probe:
    def ping(self):
        return "pong"
probe = Probe.remote()
print("job-ready", ray.get(probe.ping.remote()), flush=True)
time.sleep(120)
"""


def _env(home: Path) -> dict[str, str]:
    """The environment without the caller's Ray address or token, and a HOME of its own (no ~/.ray)."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_CLIENT_VARS}
    return env | {"HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}


def _listeners(root: int) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket (and bound UDP one) of `root` and its
    descendants; processes that exit meanwhile are skipped."""
    found = []
    for process in [psutil.Process(root), *psutil.Process(root).children(recursive=True)]:
        try:
            sockets, name = process.net_connections(kind="inet"), process.name()
        except psutil.Error:
            continue
        found += [
            (s.laddr.ip, s.laddr.port, name) for s in sockets if s.status == psutil.CONN_LISTEN or not s.raddr
        ]
    return sorted(set(found))


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _assert_loopback_only(root: int, expect: set[str]) -> list[tuple[str, int, str]]:
    listening = _listeners(root)
    print("\n".join(f"{ip:>18} {port:>6}  {name}" for ip, port, name in listening))  # shown with -s
    outside = [entry for entry in listening if not _is_loopback(entry[0])]
    assert not outside, f"listening beyond loopback: {outside}"
    assert expect <= {name for _, _, name in listening}, listening  # the components are there to be checked
    return listening


def _gcs_answer(gcs_address: str, token: str | None) -> str:
    """The GCS's answer to a real gRPC call carrying `token` (or none): "ok" or the status code's name."""
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(gcs_address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), metadata=metadata, timeout=20)
        except grpc.RpcError as exc:
            return exc.code().name
    return "ok"


def _http_status(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=20) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_for_job(head: LocalHead, job_id: str) -> None:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.address, headers=head.auth_headers())
    deadline = time.monotonic() + 90
    while "job-ready pong" not in client.get_job_logs(job_id):
        assert time.monotonic() < deadline, client.get_job_logs(job_id)[-3000:]
        assert client.get_job_status(job_id).value in ("PENDING", "RUNNING"), client.get_job_logs(job_id)
        time.sleep(1)


@pytest.mark.slow
def test_demo_head_listens_on_loopback_only_and_refuses_clients_without_its_token(tmp_path: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    with local_head(_env(tmp_path), num_cpus=2) as head:
        assert head.token_path is not None and head.token_path.stat().st_mode & 0o777 == 0o600
        assert head.token_path.parent.stat().st_mode & 0o777 == 0o700  # not Ray's world-writable temp dir
        token = head.token_path.read_text()
        client = JobSubmissionClient(head.address, headers=head.auth_headers())
        job_id = client.submit_job(entrypoint=f"{sys.executable} -c '{JOB}'")
        _wait_for_job(head, job_id)  # a job driver, its supervisor and a worker are up too
        _assert_loopback_only(head.pid, {"gcs_server", "raylet", "ray::DashboardAgent", "ray::Probe"})
        jobs = f"{head.address}/api/jobs/"
        assert (_http_status(jobs, None), _http_status(jobs, "0" * 64), _http_status(jobs, token)) == (
            401,
            403,
            200,
        )
        assert _gcs_answer(head.gcs_address, None) == "UNAUTHENTICATED"
        assert _gcs_answer(head.gcs_address, "0" * 64) == "UNAUTHENTICATED"
        assert _gcs_answer(head.gcs_address, token) == "ok"
        client.stop_job(job_id)
    assert not head.token_path.exists()  # removed with the head's temp dir
    assert not (tmp_path / ".ray").exists()  # ~/.ray/auth_token neither read nor written


PRIVATE = """
import json, sys, ray
from rlvr.cluster import ensure_ray
ensure_ray(2)
@ray.remote
class Probe:
    def ping(self):
        return "pong"
probe = Probe.remote()
ray.get(probe.ping.remote())
info = {"gcs": ray.get_runtime_context().gcs_address, "ip": ray.util.get_node_ip_address()}
print(json.dumps(info), flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.mark.slow
def test_private_instance_listens_on_loopback_only_and_refuses_clients_without_its_token(
    tmp_path: Path,
) -> None:
    """`rlvr train` without a cluster (also `rlvr sft` and the builder's model) through `ensure_ray`."""
    driver = subprocess.Popen(
        [sys.executable, "-c", PRIVATE],
        cwd=REPO,
        env=_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = driver.stdout.readline()
        assert line, driver.communicate(timeout=60)[1][-3000:]
        info = json.loads(line)
        assert info["ip"] == "127.0.0.1"
        _assert_loopback_only(driver.pid, {"gcs_server", "raylet", "ray::Probe"})
        assert _gcs_answer(info["gcs"], None) == "UNAUTHENTICATED"
        assert _gcs_answer(info["gcs"], "0" * 64) == "UNAUTHENTICATED"
    finally:
        _, err = driver.communicate(input="", timeout=120)
    assert driver.returncode == 0, err[-3000:]
    assert OPT_OUT_ADVICE not in err  # rlvr never tells its users to turn security off
    assert not (tmp_path / ".ray").exists()


def test_secured_env(tmp_path: Path) -> None:
    base = {
        "PATH": "/bin",
        "RAY_ADDRESS": "head:6379",
        "RAY_AUTH_TOKEN": "theirs",
        "RAY_AUTH_TOKEN_PATH": "x",
    }
    token = write_token(tmp_path)
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text()) == 64
    with pytest.raises(FileExistsError):
        write_token(tmp_path)  # never overwritten
    env = secured_env(base, token)
    assert env == {
        "PATH": "/bin",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    assert not auth_opted_out(env) and auth_opted_out({"RAY_AUTH_MODE": "Disabled"})
    assert secured_env({"RAY_AUTH_MODE": "disabled"}, None)["RAY_AUTH_MODE"] == "disabled"
