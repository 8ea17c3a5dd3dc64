"""Run a verifier in worker processes, with a soft and a hard time limit on every answer.

    with VerifierPool("math", num_workers=2, soft_timeout_s=5.0) as pool:
        results = pool.verify_batch([(response, reference), (response, reference, sample)])

Model output is hostile: an answer can make sympy loop for minutes or crash the interpreter. Each worker
verifies in its main thread, so verifiers that use `signal.alarm` for their own timeouts (math-verify does)
work unchanged. The soft limit does not use SIGALRM, which such verifiers re-arm and cancel: a watchdog
thread in the worker notices a verification older than `soft_timeout_s` and sends SIGUSR2 to the main thread
(`pthread_kill`; the pool never calls `signal.alarm`, from any thread). The handler runs on the main thread
and raises inside the verifier; the answer becomes status "timeout" and the worker lives on. Code stuck in
C ignores signals until it returns, so the parent also keeps a deadline per worker: a worker silent for
`hard_timeout_s` is SIGKILLed and replaced, its answer becomes "timeout" and the rest of its chunk goes to
other workers. A worker that dies turns its answer into "error". One bad answer never fails or hangs the
batch.

Items go to workers in chunks (fewer round trips) and results come back one by one, so the parent always
knows which answer a worker is on and how long it has been on it. A chunk is only sent to a worker that has
answered everything, i.e. one blocked reading its pipe, so sending can never block on a stuck worker.

Wire protocol, parent -> worker: a pickled list of jobs `(index, response, reference, sample)`, or None to
stop. Worker -> parent: `(_READY, failure_rewards)` once built, `(_INIT_FAILED, traceback)`, then
`(index, Result)` per answer.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import pickle
import signal
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

from verifiers.base import STATUSES, Result, Status

Item = tuple[str, str] | tuple[str, str, Mapping[str, Any] | None]
Job = tuple[int, Any, Any, Any]  # (index in the batch, response, reference, sample)

_MAX_CHUNK_ITEMS = 64
_MAX_CHUNK_CHARS = 4_000_000  # keeps one message (and the time the parent spends writing it) bounded
_MAX_DETAIL_CHARS = 500  # an exception message may quote a 1 MB response
_MAX_WAIT_S = 1.0  # the parent wakes up at least this often, whatever it is waiting for
_READY = "ready"
_INIT_FAILED = "init_failed"
SOFT_LIMIT_SIGNAL = signal.SIGUSR2  # sent by a worker's watchdog thread to its own main thread
_MAX_WATCHDOG_SLEEP_S = 60.0  # also keeps time.sleep finite for soft_timeout_s=inf


# ---------------------------------------------------------------- worker process side


class _SoftTimeout(BaseException):
    """A BaseException, so that a verifier's `except Exception` (math-verify's too) does not swallow it."""


class _SoftLimit:
    """Bounds each verification to `seconds` of wall time; one per worker process, built on its main thread.

    The main thread marks the start and end of every verification with two attribute writes (no lock, no
    syscall, no wake-up). A daemon watchdog thread polls at most every `seconds` and, when the verification
    it saw start is still running past the limit, sends SOFT_LIMIT_SIGNAL to the main thread. The handler
    raises only if that same verification is still running, so a late signal never escapes into the worker
    loop or hits the next answer. The signal is repeated every second while the verification goes on (a
    verifier may swallow BaseException); the parent's hard limit bounds code that never lets it through.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._count = 0
        self._current = 0  # id of the running verification; 0 while idle
        self._started = 0.0
        self._fired = 0  # id of the verification the watchdog signalled
        self._main_thread = threading.main_thread().ident
        signal.signal(SOFT_LIMIT_SIGNAL, self._fire)
        threading.Thread(target=self._watch, name="rlvr-soft-limit", daemon=True).start()

    def _fire(self, signum: int, frame: Any) -> None:
        if self._current and self._current == self._fired:
            raise _SoftTimeout

    def __enter__(self) -> None:
        self._count += 1
        self._started = time.monotonic()
        self._current = self._count  # written last: the watchdog reads `_current` first

    def __exit__(self, *exc_info: object) -> None:
        self._current = 0

    def _watch(self) -> None:
        assert self._main_thread is not None
        while True:
            current, started = self._current, self._started
            if not current:
                time.sleep(min(self.seconds, _MAX_WATCHDOG_SLEEP_S))
                continue
            remaining = started + self.seconds - time.monotonic()
            if remaining > 0:
                time.sleep(min(remaining, _MAX_WATCHDOG_SLEEP_S))
                continue
            if self._current == current:
                self._fired = current
                signal.pthread_kill(self._main_thread, SOFT_LIMIT_SIGNAL)
                time.sleep(min(1.0, self.seconds))


def _describe(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # a hostile __str__ must not take the worker down
        text = type(exc).__name__
    return text[:_MAX_DETAIL_CHARS]


def _failure(verifier: Any, status: Status, detail: str | None) -> Result:
    """A failed answer, with the verifier's own reward for it when the verifier can say."""
    build = getattr(verifier, "result", None)
    if callable(build):
        try:
            result = build(status, None, detail)
            if isinstance(result, Result):
                return result
        except Exception:
            pass
    return Result(False, -1.0, status, None, detail)


def _verify_one(verifier: Any, job: Job, soft_limit: _SoftLimit) -> Result:
    _, response, reference, sample = job
    try:
        with soft_limit:
            result = verifier.verify(response, reference, sample)
    except _SoftTimeout:
        return _failure(verifier, "timeout", f"over the soft limit of {soft_limit.seconds:g}s")
    except Exception as exc:
        return _failure(verifier, "error", _describe(exc))
    if not isinstance(result, Result) or result.status not in STATUSES:
        return _failure(verifier, "error", f"verifier returned {type(result).__name__}, not a valid Result")
    return result


def _build_verifier(spec: Any, kwargs: dict[str, Any]) -> Any:
    if not isinstance(spec, str):
        if kwargs:
            raise TypeError(f"verifier_kwargs {sorted(kwargs)} cannot be applied to a verifier object")
        return spec
    from verifiers.registry import get_verifier

    return get_verifier(spec, **kwargs)


def _send(conn: Connection, message: Any) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _send_result(conn: Connection, verifier: Any, index: int, result: Result) -> None:
    try:
        payload = pickle.dumps((index, result), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        failure = _failure(verifier, "error", f"result cannot be pickled: {_describe(exc)}")
        payload = pickle.dumps((index, failure), protocol=pickle.HIGHEST_PROTOCOL)
    conn.send_bytes(payload)


def _worker_main(conn: Connection, spec: Any, kwargs: dict[str, Any], soft_timeout_s: float) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        verifier = _build_verifier(spec, kwargs)
    except BaseException as exc:
        _send(conn, (_INIT_FAILED, (_describe(exc), traceback.format_exc(limit=8))))
        return
    soft_limit = _SoftLimit(soft_timeout_s)
    rewards = {status: _failure(verifier, status, None).reward for status in ("timeout", "error")}
    _send(conn, (_READY, rewards))
    while True:
        try:
            jobs = pickle.loads(conn.recv_bytes())
        except EOFError:  # the parent is gone
            return
        if jobs is None:
            return
        for job in jobs:
            _send_result(conn, verifier, job[0], _verify_one(verifier, job, soft_limit))


# ---------------------------------------------------------------- parent side


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    started_at: float
    ready: bool = False
    last_heard: float = 0.0  # when it last answered, or was handed a chunk while idle
    jobs: deque[int] = field(default_factory=deque)  # batch indices sent and not answered, in order


class _Batch:
    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.results: list[Result | None] = [None] * len(jobs)
        self.pending: deque[int] = deque(range(len(jobs)))
        self.unanswered = len(jobs)

    def answer(self, index: int, result: Result) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.unanswered -= 1

    def requeue(self, indices: Sequence[int]) -> None:
        self.pending.extendleft(reversed(indices))


def _as_job(index: int, item: Any) -> Job:
    if not isinstance(item, tuple | list) or len(item) not in (2, 3):
        raise ValueError(
            f"item {index}: expected (response, reference) or (response, reference, sample), got {item!r:.80}"
        )
    return (index, item[0], item[1], item[2] if len(item) == 3 else None)


def _job_chars(job: Job) -> int:
    return sum(len(part) for part in job[1:3] if isinstance(part, str))


def _exit_detail(process: BaseProcess) -> str:
    process.join(timeout=2.0)
    code = process.exitcode
    if code is None:
        return "worker process stopped answering and closed its pipe"
    if code < 0:
        try:
            return f"worker process killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker process killed by signal {-code}"
    return f"worker process exited with code {code}"


def _stop_workers(workers: list[_Worker]) -> None:
    """Ask idle workers to stop, then kill whatever is still alive. Also runs when a pool is collected."""
    for worker in workers:
        if not worker.jobs and worker.process.is_alive():
            with contextlib.suppress(OSError):
                _send(worker.conn, None)
    deadline = time.monotonic() + 2.0
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5.0)
        worker.conn.close()
    workers.clear()


class VerifierStartError(RuntimeError):
    """A pool's verifier could not be built in its worker (an unknown name, a plug-in that raises on import
    or construction). `reason` is the exception in one line; the message adds the worker's traceback."""

    def __init__(self, spec: Any, reason: str, worker_traceback: str = "") -> None:
        super().__init__(
            f"verifier {spec!r} failed to start in a worker: {reason}\n{worker_traceback}".rstrip()
        )
        self.reason = reason


def _start_method() -> str:
    # Never fork: callers are Ray actors and torch programs with threads.
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class VerifierPool:
    """Verifies (response, reference[, sample]) items in `num_workers` processes; see the module docstring.

    `verifier` is a spec for `get_verifier` (a registered name, "pkg.module:obj" or an entry-point name),
    resolved with `verifier_kwargs` inside every worker, or a picklable verifier object. `hard_timeout_s`
    defaults to `2 * soft_timeout_s + 1`. Workers build their verifier before the constructor returns, so a
    bad spec raises here (RuntimeError with the worker's traceback). Not meant for concurrent callers: calls
    from several threads are serialised.
    """

    def __init__(
        self,
        verifier: Any = "math",
        num_workers: int = 2,
        soft_timeout_s: float = 5.0,
        hard_timeout_s: float | None = None,
        verifier_kwargs: Mapping[str, Any] | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        hard_timeout_s = 2.0 * soft_timeout_s + 1.0 if hard_timeout_s is None else hard_timeout_s
        if num_workers < 1 or soft_timeout_s <= 0 or hard_timeout_s < soft_timeout_s:
            raise ValueError("need num_workers >= 1 and 0 < soft_timeout_s <= hard_timeout_s")
        self.num_workers = num_workers
        self.soft_timeout_s = float(soft_timeout_s)
        self.hard_timeout_s = float(hard_timeout_s)
        self.startup_timeout_s = float(startup_timeout_s)
        self.replacements = 0  # workers killed or lost and started again
        self._spec = verifier
        self._kwargs = dict(verifier_kwargs or {})
        self._context = multiprocessing.get_context(_start_method())
        self._counts = dict.fromkeys(STATUSES, 0)
        self._failure_rewards: dict[str, float] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _stop_workers, self._workers)
        try:
            for _ in range(num_workers):
                self._workers.append(self._start_worker())
            self._run(_Batch([]), until_ready=True)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ public API

    def verify_batch(self, items: Sequence[Item]) -> list[Result]:
        """One Result per item, in order. Items are (response, reference) or (response, reference, sample)."""
        batch = _Batch([_as_job(index, item) for index, item in enumerate(items)])
        with self._lock:
            if self._closed:
                raise RuntimeError("VerifierPool is closed")
            try:
                self._run(batch)
            except BaseException:
                # Interrupted mid-batch: busy workers would send stale answers into the next batch.
                for worker in [worker for worker in self._workers if worker.jobs]:
                    self._restart(worker)
                raise
        results = [result for result in batch.results if result is not None]
        if len(results) != len(items):  # _run returns only once every item is answered
            raise RuntimeError(f"VerifierPool lost {len(items) - len(results)} answers")
        for result in results:
            self._counts[result.status] += 1
        return results

    def verify(self, response: str, reference: str, sample: Mapping[str, Any] | None = None) -> Result:
        return self.verify_batch([(response, reference, sample)])[0]

    @property
    def status_counts(self) -> dict[str, int]:
        """Answers per status since creation or the last `reset_counts()`; every status is a key."""
        return dict(self._counts)

    def reset_counts(self) -> None:
        self._counts = dict.fromkeys(STATUSES, 0)

    @property
    def worker_pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers if worker.process.pid is not None]

    def close(self) -> None:
        """Stops the workers: idle ones are asked to exit, the rest are killed. Safe to call twice."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------ scheduling

    def _run(self, batch: _Batch, until_ready: bool = False) -> None:
        """Until every item is answered (and, with `until_ready`, every worker is ready): dispatch, wait,
        enforce deadlines. A worker replaced during a batch may still be starting when the batch returns;
        the next call picks it up."""
        while batch.unanswered or (until_ready and not all(worker.ready for worker in self._workers)):
            self._dispatch(batch)
            self._wait_and_collect(batch)
            self._enforce_deadlines(batch)

    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(child_conn, self._spec, self._kwargs, self.soft_timeout_s),
            name="rlvr-verifier",
            daemon=True,  # dies with the parent's interpreter even if close() is never called
        )
        try:
            process.start()
        except BaseException:
            parent_conn.close()
            raise
        finally:
            child_conn.close()  # else the parent never sees EOF when the worker dies
        return _Worker(process, parent_conn, started_at=time.monotonic())

    def _dispatch(self, batch: _Batch) -> None:
        for worker in self._workers:
            if not batch.pending:
                return
            if worker.ready and not worker.jobs:
                self._send_chunk(worker, batch)

    def _send_chunk(self, worker: _Worker, batch: _Batch) -> None:
        # Small chunks while few items remain, so that the last items spread over all workers.
        size = max(1, min(_MAX_CHUNK_ITEMS, math.ceil(len(batch.pending) / (2 * len(self._workers)))))
        chunk: list[Job] = []
        chars = 0
        while batch.pending and len(chunk) < size and chars < _MAX_CHUNK_CHARS:
            chunk.append(batch.jobs[batch.pending.popleft()])
            chars += _job_chars(chunk[-1])
        payload, chunk = self._pickle_chunk(chunk, batch)
        if not chunk:
            return
        try:
            worker.conn.send_bytes(payload)
        except OSError:  # it died; its sentinel reports that in the next wait
            batch.requeue([job[0] for job in chunk])
            return
        worker.jobs.extend(job[0] for job in chunk)
        worker.last_heard = time.monotonic()

    def _pickle_chunk(self, chunk: list[Job], batch: _Batch) -> tuple[bytes, list[Job]]:
        """Pickles a chunk; an item that cannot be pickled (a sample holding a lock) is answered "error"."""
        try:
            return pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL), chunk
        except Exception:
            pass
        sendable = []
        for job in chunk:
            try:
                pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
                sendable.append(job)
            except Exception as exc:
                batch.answer(job[0], self._failure("error", f"item cannot be pickled: {_describe(exc)}"))
        return pickle.dumps(sendable, protocol=pickle.HIGHEST_PROTOCOL), sendable

    def _seconds_to_next_deadline(self) -> float:
        deadlines = [self._deadline(worker) for worker in self._workers if worker.jobs or not worker.ready]
        if not deadlines:
            return _MAX_WAIT_S
        return min(_MAX_WAIT_S, max(0.0, min(deadlines) - time.monotonic()))

    def _deadline(self, worker: _Worker) -> float:
        if worker.ready:
            return worker.last_heard + self.hard_timeout_s
        return worker.started_at + self.startup_timeout_s

    def _wait_and_collect(self, batch: _Batch) -> None:
        by_handle: dict[Any, _Worker] = {}
        for worker in self._workers:
            by_handle[worker.conn] = worker
            by_handle[worker.process.sentinel] = worker
        woken = {by_handle[handle] for handle in wait(list(by_handle), self._seconds_to_next_deadline())}
        for worker in woken:
            if not self._collect(worker, batch) or not worker.process.is_alive():
                self._replace(worker, batch, "error", _exit_detail(worker.process))

    def _collect(self, worker: _Worker, batch: _Batch) -> bool:
        """Reads every message the worker has sent so far. False once its pipe is closed."""
        try:
            while worker.conn.poll():
                self._handle(worker, pickle.loads(worker.conn.recv_bytes()), batch)
        except (EOFError, OSError):
            return False
        return True

    def _handle(self, worker: _Worker, message: tuple[Any, Any], batch: _Batch) -> None:
        tag, payload = message
        worker.last_heard = time.monotonic()
        if tag == _READY:
            worker.ready = True
            self._failure_rewards = payload
        elif tag == _INIT_FAILED:
            raise VerifierStartError(self._spec, *payload)
        elif worker.jobs and worker.jobs[0] == tag:  # a worker answers its jobs in the order it got them
            worker.jobs.popleft()
            batch.answer(tag, payload)

    def _enforce_deadlines(self, batch: _Batch) -> None:
        for worker in list(self._workers):
            if (worker.ready and not worker.jobs) or time.monotonic() <= self._deadline(worker):
                continue
            # One last read: it may have answered while the parent was busy with other workers.
            collected = self._collect(worker, batch)
            if not worker.ready and collected:
                raise VerifierStartError(
                    self._spec, f"its worker did not start within {self.startup_timeout_s:g}s"
                )
            if not collected:
                self._replace(worker, batch, "error", _exit_detail(worker.process))
            elif worker.jobs and time.monotonic() > self._deadline(worker):
                detail = f"killed after hard limit of {self.hard_timeout_s:g}s"
                self._replace(worker, batch, "timeout", detail)

    def _replace(self, worker: _Worker, batch: _Batch, status: Status, detail: str) -> None:
        """The worker is gone: its current item gets `status`, its other items go back to the queue."""
        if not worker.ready:
            raise VerifierStartError(self._spec, f"its worker died while starting ({detail})")
        if worker.jobs:
            current, *rest = worker.jobs
            batch.answer(current, self._failure(status, detail))
            batch.requeue(rest)
        self._restart(worker)

    def _restart(self, worker: _Worker) -> None:
        """Kills the worker if it still runs and starts a fresh one in its slot, without waiting for it."""
        worker.jobs.clear()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5.0)
        worker.conn.close()
        self._workers[self._workers.index(worker)] = self._start_worker()
        self.replacements += 1

    def _failure(self, status: Status, detail: str) -> Result:
        return Result(False, self._failure_rewards.get(status, -1.0), status, None, detail)
