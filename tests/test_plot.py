"""`rlvr plot`: PNG curves from metrics.jsonl and eval files; malformed lines are reported, not hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlvr.cli import main
from rlvr.plot import load_run, plot_run

PANELS = ("reward_mean", "accuracy", "response_len", "pass_at_1")


def _write_run(run_dir: Path) -> None:
    rows = [
        {
            "step": s,
            "reward_mean": -1 + 0.1 * s,
            "accuracy": 0.05 * s,
            "response_len": 40 - s,
            "time_step_s": 2.5,
        }
        for s in range(1, 6)
    ]
    del rows[2]["accuracy"]  # a missing key leaves a gap, not an error
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, '{"step": 4, "reward_mean": ')  # a line cut short by a crash
    lines.append("")
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    evals = [{"step": 2, "pass@1": 0.1}, {"step": 4, "pass@k": {"1": 0.2, "8": 0.5}}]
    (run_dir / "eval_results.jsonl").write_text("\n".join(json.dumps(e) for e in evals) + "\n")


def test_load_run_is_tolerant_and_counts_malformed(tmp_path: Path) -> None:
    _write_run(tmp_path)
    run = load_run(tmp_path)
    assert sorted(run.rows) == [1, 2, 3, 4, 5]
    assert run.series("accuracy")[0] == [1, 2, 4, 5]
    assert run.series("pass@1") == ([2, 4], [0.1, 0.2])
    assert len(run.malformed) == 1 and run.malformed[0].startswith("metrics.jsonl:4:")
    assert run.wall_hours()[5] == pytest.approx(5 * 2.5 / 3600)


def test_plot_run_writes_pngs(tmp_path: Path) -> None:
    _write_run(tmp_path)
    written, run, skipped = plot_run(tmp_path)
    expected = {tmp_path / "plots" / f"{p}_vs_{x}.png" for p in PANELS for x in ("step", "time")}
    assert set(written) == expected and not skipped
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000


def test_cli_plot_reports_malformed_and_skips_missing_evals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_run(tmp_path)
    (tmp_path / "eval_results.jsonl").unlink()
    assert main(["plot", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    printed = [Path(line) for line in out.splitlines() if line.endswith(".png")]
    assert len(printed) == 6 and all(p.stat().st_size > 0 for p in printed)
    assert "skipped pass_at_1: no data" in out
    assert "1 malformed line(s)" in err and "metrics.jsonl:4:" in err


def test_cli_plot_without_metrics_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl does not exist" in capsys.readouterr().err
