"""benchmarks/tree_memory.py: the process-tree poller the whole-job benchmarks report peak memory with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tree_memory import TreeMemory  # noqa: E402


def test_a_short_lived_child_is_seen_and_counted() -> None:
    with TreeMemory(os.getpid(), interval=0.2) as memory:
        child = subprocess.Popen(["sleep", "1.5"])
        child.wait()
    assert "sleep" in memory.names  # RSS and names are read every interval, not only with PSS
    assert memory.samples >= 4 and memory.most >= 2
    assert memory.peak_rss >= memory.peak_pss > 0


def test_a_vanished_root_is_no_error() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    memory = TreeMemory(gone.pid)
    memory.sample()
    assert memory.peak_rss == 0 and not memory.names
