"""`benchmarks/vs_trl.py --smoke`: the rlvr side of the TRL comparison end to end at CI size (the tiny preset,
torch engine, 1 step of 2 prompts x 2 samples, ~40 s on 2 cores), in the informative regime, whose reward the
verifier workers import by spec from the benchmark folder. TRL itself is not run here (its venv is made only
by `make bench-trl`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_smoke_run_writes_a_sane_result(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "vs_trl.json"
    results = REPO / "benchmarks/results/vs_trl.json"
    before = results.stat().st_mtime_ns if results.exists() else None
    env = {**os.environ, "RLVR_DATA_DIR": str(shared_data)}
    command = [
        sys.executable,
        "benchmarks/vs_trl.py",
        "--smoke",
        "--regime",
        "informative",
        "--out",
        str(out),
    ]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    record = json.loads(out.read_text())
    side = record["informative"]["rlvr"]
    assert side["seconds_per_step"] > 0 and side["peak_rss_gib"] > 0 and side["peak_pss_gib"] > 0
    assert len(side["steps"]) == 1
    step = side["steps"][0]
    assert step["wall_s"] >= step["generate_s"] > 0 and step["update_s"] > 0
    assert -1.0 <= step["reward_mean"] <= 1.0 and step["tokens"] > 0
    # Ray's are counted; a name may be read as the kernel's 15-character comm ("ray::RolloutWor")
    seen = {name[:15] for name in side["process_names"]}
    assert {"raylet", "ray::Learner", "ray::RolloutWor"} <= seen
    assert record["settings"]["smoke"] and record["settings"]["prompt_rows"] == 2
    assert out.with_suffix(".md").read_text().startswith("| regime | side |")
    assert (results.stat().st_mtime_ns if results.exists() else None) == before  # smoke never writes there
