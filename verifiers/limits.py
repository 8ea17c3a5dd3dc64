"""A wall-clock limit for pure-Python work in the main thread, where the pool's workers verify.

`time_limit(seconds)` arms ITIMER_REAL with a handler that raises `TimeUp` (a BaseException, so that a
library's `except Exception` lets it through), and restores the previous handler and disarms the timer after.
It does nothing outside the main thread (signals cannot be used there), nor when SIGALRM already has a handler
or ITIMER_REAL is already armed (someone else's timer, or an outer `time_limit`: the outer one still applies).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class TimeUp(BaseException):
    """Raised by `time_limit`; a BaseException, so that a library's `except Exception` lets it pass."""


def _raise_time_up(signum: int, frame: Any) -> None:
    raise TimeUp


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raises TimeUp after `seconds` of wall time, in the main thread when SIGALRM is free; else a no-op."""
    usable = threading.current_thread() is threading.main_thread()
    if usable:
        previous = signal.getsignal(signal.SIGALRM)
        usable = (
            previous in (signal.SIG_DFL, signal.SIG_IGN, None)
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0
        )
    if not usable:
        yield
        return
    signal.signal(signal.SIGALRM, _raise_time_up)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
