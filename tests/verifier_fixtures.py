"""Verifiers that misbehave on purpose, for the pool tests. Workers import them by path, e.g.
"tests.verifier_fixtures:MisbehavingVerifier".

The response is a small command language so one batch can mix behaviours: "sleep:<s>" sleeps in Python
(the soft limit interrupts it), "stuck:<s>" blocks every signal and sleeps (it ignores the soft limit like
code stuck in C; only the hard limit ends it), "spin" sums a huge range in C without checking signals, "raise"
raises, "exit" calls os._exit(1), "segv" kills itself with SIGSEGV, "pid" answers with the worker's pid,
"alarm:<s>" sleeps under its own `signal.alarm` timer as math-verify's timeouts do, "swallow:<s>" sleeps and
swallows the first interruption (BaseException included), "itimer" answers with the worker's ITIMER_REAL,
"busy:<ms>" burns that much CPU time;
anything else is compared with the reference.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

from verifiers.base import Result, Status, Verifier


class EchoVerifier(Verifier):
    """Correct when response == reference; nothing else. The trivial verifier for overhead measurements."""

    name = "echo"

    def check(
        self, response: str, reference: str, sample: Mapping[str, Any] | None
    ) -> tuple[Status, str | None, str | None]:
        return ("ok" if response == reference else "wrong"), response[:64], None


def _stuck(seconds: float) -> None:
    # Blocked signals stay pending, exactly as they would while C code holds the interpreter: neither the
    # pool's soft-limit signal nor anything else gets through; only the parent's SIGKILL ends it.
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        time.sleep(seconds)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signal.valid_signals())


def _own_alarm(seconds: float) -> None:
    # math_verify.utils.timeout: its own SIGALRM handler and alarm, then alarm(0) and the old handler back.
    def handler(signum: int, frame: Any) -> None:
        raise TimeoutError("the verifier's own alarm")

    old_handler = signal.signal(signal.SIGALRM, handler)
    signal.alarm(60)
    try:
        time.sleep(seconds)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_handler)


def _swallow(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    try:
        time.sleep(seconds)
    except BaseException:  # a careless verifier: it eats the soft limit once and carries on
        time.sleep(max(0.0, deadline - time.monotonic()))


def _busy(milliseconds: float) -> None:
    deadline = time.thread_time() + milliseconds / 1000  # CPU time, so that a loaded machine is slower
    while time.thread_time() < deadline:
        pass


class MisbehavingVerifier(EchoVerifier):
    """Acts out the command in the response; see the module docstring."""

    name = "misbehaving"

    def check(
        self, response: str, reference: str, sample: Mapping[str, Any] | None
    ) -> tuple[Status, str | None, str | None]:
        command, _, argument = response.partition(":")
        if command == "sleep":
            time.sleep(float(argument))
        elif command == "stuck":
            _stuck(float(argument))
        elif command == "spin":
            sum(range(10**11))  # minutes of C code that never checks for signals
        elif command == "raise":
            raise ValueError(f"bad answer {argument}")
        elif command == "exit":
            os._exit(1)
        elif command == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif command == "alarm":
            _own_alarm(float(argument))
        elif command == "swallow":
            _swallow(float(argument))
        elif command == "busy":
            _busy(float(argument))
        elif command == "pid":
            return "ok", str(os.getpid()), None
        elif command == "itimer":
            return "ok", repr(signal.getitimer(signal.ITIMER_REAL)), None
        return super().check(response, reference, sample)


class BoxedCommandVerifier(MisbehavingVerifier):
    """A MisbehavingVerifier that reads its command from `\\boxed{...}`, as the builder's vote sends it."""

    def check(
        self, response: str, reference: str, sample: Mapping[str, Any] | None
    ) -> tuple[Status, str | None, str | None]:
        return super().check(response.removeprefix("\\boxed{").removesuffix("}"), reference, sample)


class MainThreadVerifier(EchoVerifier):
    """Answers "ok" only when called on the process's main thread (math-verify's timeouts need that)."""

    def check(
        self, response: str, reference: str, sample: Mapping[str, Any] | None
    ) -> tuple[Status, str | None, str | None]:
        on_main = threading.current_thread() is threading.main_thread()
        return ("ok" if on_main else "wrong"), threading.current_thread().name, None


class BrokenInitVerifier(EchoVerifier):
    def __init__(self, **kwargs: Any) -> None:
        raise RuntimeError("this verifier cannot be built")


class DyingInitVerifier(EchoVerifier):
    def __init__(self, **kwargs: Any) -> None:
        os._exit(5)  # a plug-in that takes its process down while it is built


class KwargsVerifier(EchoVerifier):
    """Reports the keyword arguments it was built with, so tests can see that they arrived."""

    def __init__(self, *, flavour: str = "plain", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flavour = flavour

    def check(
        self, response: str, reference: str, sample: Mapping[str, Any] | None
    ) -> tuple[Status, str | None, str | None]:
        return "ok", self.flavour, None


class PlainVerifier:
    """Duck-typed verifier with no `result()` helper: the pool falls back to reward -1.0 for failures."""

    def verify(self, response: str, reference: str, sample: Any = None) -> Any:
        if response == "raise":
            raise KeyError(response)
        if response == "sleep":
            time.sleep(60)
        if response == "junk":
            return "not a Result"
        return Result(True, 1.0, "ok")
