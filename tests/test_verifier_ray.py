"""VerifierWorker on a local Ray cluster, with the real "math" verifier."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
import pytest
import ray

from rlvr.cluster import ray_session
from verifiers import STATUSES, Result, VerifierWorker


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    with ray_session(2):  # loopback only, with a token, as every Ray instance rlvr starts
        yield


@pytest.mark.slow
def test_verifier_worker_answers_in_order_and_counts(ray_cluster: None) -> None:
    worker = VerifierWorker.options(num_cpus=1).remote(verifier="math", num_workers=1, soft_timeout_s=5.0)
    items = [
        ("so the answer is $\\boxed{\\frac{1}{2}}$", "0.5"),
        ("I think it is \\boxed{3}.", "4"),
        ("Therefore \\boxed{12}", "12", {"id": "gsm8k-1"}),
    ]
    results = ray.get(worker.verify_batch.remote(items), timeout=120)
    assert all(isinstance(result, Result) for result in results)
    assert [(r.status, r.correct, r.reward) for r in results] == [
        ("ok", True, 1.0),
        ("wrong", False, -1.0),
        ("ok", True, 1.0),
    ]
    counts = ray.get(worker.status_counts.remote(), timeout=30)
    assert counts == dict.fromkeys(STATUSES, 0) | {"ok": 2, "wrong": 1}
    health = ray.get(worker.health.remote(), timeout=30)
    assert health["num_workers"] == 1 and len(health["worker_pids"]) == 1 and health["replacements"] == 0
    ray.get(worker.reset_counts.remote(), timeout=30)
    assert sum(ray.get(worker.status_counts.remote(), timeout=30).values()) == 0
    ray.get(worker.close.remote(), timeout=30)
    ray.kill(worker)


@pytest.mark.slow
def test_verifier_worker_enforces_limits_and_its_processes_die_with_it(ray_cluster: None) -> None:
    worker = VerifierWorker.options(num_cpus=1).remote(
        verifier="tests.verifier_fixtures:MisbehavingVerifier",
        num_workers=1,
        soft_timeout_s=0.5,
        hard_timeout_s=2.0,
    )
    items = [("sleep:30", ""), ("stuck:120", ""), ("a", "a"), ("exit", ""), ("b", "c")]
    started = time.monotonic()
    results = ray.get(worker.verify_batch.remote(items), timeout=120)
    assert time.monotonic() - started < 30
    assert [r.status for r in results] == ["timeout", "timeout", "ok", "error", "wrong"]
    health = ray.get(worker.health.remote(), timeout=30)
    assert health["replacements"] == 2 and health["pid"] != os.getpid()
    pool_pids = health["worker_pids"]
    assert pool_pids and all(psutil.pid_exists(pid) for pid in pool_pids)
    ray.kill(worker)  # no close(): the pool's processes must not outlive a killed actor
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in pool_pids + [health["pid"]]):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pool_pids + [health["pid"]])


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
