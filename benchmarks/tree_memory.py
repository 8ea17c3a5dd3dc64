"""Peak memory of a process tree, polled from a thread (the benchmarks that measure a whole job)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil

GIB = 1024**3


class TreeMemory:
    """Polls the process tree under `pid` from a thread: the largest sums of RSS and PSS over the tree seen at
    one instant, and the names of the processes seen. RSS and names are read every `interval` s (/proc statm,
    cheap), so a process that lives a few seconds is still seen; PSS (/proc/PID/smaps_rollup, where the kernel
    walks every mapping) is read every `pss_every` samples at most, and only after a pause 50 times as long as
    its last read took, so polling costs under 2% of a core: a poller that read full smaps twice a second took
    a whole core from the measured side."""

    def __init__(self, pid: int, interval: float = 1.0, pss_every: int = 5) -> None:
        self.pid, self.interval, self.pss_every = pid, interval, pss_every
        self.peak_rss = self.peak_pss = 0
        self.names: set[str] = set()
        self.at_peak: dict[str, float] = {}
        self.most = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        next_pss = 0.0
        while not self._stop.is_set():
            start = time.perf_counter()
            pss = start >= next_pss
            self.sample(pss=pss)
            self.samples += 1
            took = time.perf_counter() - start
            if pss:
                next_pss = start + max(self.pss_every * self.interval, 50 * took)
            self._stop.wait(max(self.interval - took, 0.05))

    def sample(self, pss: bool = True) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        rss = pss_sum = 0
        by_name: dict[str, int] = {}
        for p in procs:
            try:
                resident = p.memory_info().rss
                name = p.name().split(".")[0]  # ray::Learner.train_step -> ray::Learner
                pss_sum += _pss(p.pid) if pss else 0
            except (psutil.Error, OSError):  # gone, or a zombie, between listing and reading
                continue
            rss += resident
            by_name[name] = by_name.get(name, 0) + resident
        self.names |= set(by_name)
        if rss > self.peak_rss:  # what made up the peak, largest first
            top = sorted(by_name.items(), key=lambda kv: -kv[1])[:6]
            self.at_peak = {name: round(b / GIB, 3) for name, b in top}
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss_sum)
        self.most = max(self.most, len(procs))


def _pss(pid: int) -> int:
    """A process's proportional set size in bytes (shared pages split among the processes mapping them)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0
