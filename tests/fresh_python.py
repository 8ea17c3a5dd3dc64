"""A script in a fresh interpreter, for the tests that need a process of their own (multi-process vLLM)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_script(source: str, args: list[str], folder: Path, env: dict[str, str]) -> str:
    """Runs `source` as a script in a fresh interpreter, in `folder` (not the repository), with `env` added
    to this environment; returns its stdout, or fails the test with the end of its stderr."""
    script = folder / "script.py"
    script.write_text(source)
    done = subprocess.run(
        [sys.executable, str(script), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
