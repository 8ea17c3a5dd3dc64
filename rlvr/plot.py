"""`rlvr plot RUN_DIR`: PNG curves of a run's metrics.jsonl (and eval results) against step and wall time.

Reads `RUN_DIR/metrics.jsonl` (one JSON object per step) and, when present, held-out eval results from
`RUN_DIR/eval*.json` / `eval*.jsonl` (one object, a list of objects, or one object per line, each with a step
and a pass@1). Missing keys only leave a curve out; a malformed line is counted and reported with its line
number. Wall time is the `time` key (unix seconds) when rows have it, else the running sum of `time_step_s`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# name -> (title, y label, keys drawn as curves when present)
PANELS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "reward_mean": ("reward mean", "reward", ("reward_mean",)),
    "accuracy": ("accuracy (training rollouts)", "fraction correct", ("accuracy",)),
    "response_len": (
        "response length",
        "tokens",
        ("response_len", "response_len_correct", "response_len_wrong"),
    ),
    "pass_at_1": ("held-out pass@1", "pass@1", ("pass@1",)),
}
PASS_AT_1_KEYS = ("pass@1", "pass_at_1", "eval_pass@1", "eval/pass@1", "eval_pass_at_1")
TIME_KEYS = ("time", "timestamp", "wall_time")


@dataclass
class RunMetrics:
    """Parsed rows by step (the last row wins when a resumed run repeats a step) and the problems found."""

    rows: dict[int, dict[str, float]] = field(default_factory=dict)
    evals: dict[int, float] = field(default_factory=dict)
    malformed: list[str] = field(default_factory=list)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """Steps and values of `key` (pass@1 comes from the eval files and from metrics rows)."""
        if key == "pass@1":
            points = dict(self.evals)
            for step, row in self.rows.items():
                value = _first(row, PASS_AT_1_KEYS)
                if value is not None:
                    points.setdefault(step, value)
        else:
            points = {s: r[key] for s, r in self.rows.items() if key in r}
        steps = sorted(points)
        return steps, [points[s] for s in steps]

    def wall_hours(self) -> dict[int, float]:
        """Elapsed wall time (hours) at the end of each step, where it can be told."""
        steps = sorted(self.rows)
        stamps = [_first(self.rows[s], TIME_KEYS) for s in steps]
        if steps and all(t is not None for t in stamps):
            t0 = min(stamps) - self.rows[steps[0]].get("time_step_s", 0.0)
            return {s: (t - t0) / 3600 for s, t in zip(steps, stamps, strict=True)}
        out, total = {}, 0.0
        for s in steps:
            if "time_step_s" not in self.rows[s]:
                return out  # a gap makes every later time unknown
            total += self.rows[s]["time_step_s"]
            out[s] = total / 3600
        return out


def _first(row: dict[str, float], keys: tuple[str, ...]) -> float | None:
    return next((row[k] for k in keys if k in row), None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _numeric_row(obj: Any) -> tuple[int, dict[str, float]]:
    """(step, numeric fields) of one metrics object; ValueError saying why it is unusable."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    step = obj.get("step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValueError(f"'step' must be an integer, got {step!r}")
    row = {k: v for k, v in ((k, _number(v)) for k, v in obj.items() if k != "step") if v is not None}
    return step, row


def read_metrics(path: Path, run: RunMetrics) -> None:
    """Add metrics.jsonl rows to `run`; blank lines are ignored, anything else unusable is malformed."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            step, row = _numeric_row(json.loads(line))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            run.malformed.append(f"{path.name}:{number}: {exc}")
            continue
        run.rows[step] = row


def _eval_records(path: Path) -> list[tuple[str, Any]]:
    text = path.read_text()
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, dict):
        return [(path.name, whole)]
    if isinstance(whole, list):
        return [(f"{path.name}[{i}]", item) for i, item in enumerate(whole)]
    out: list[tuple[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{path.name}:{number}", json.loads(line)))
            except ValueError as exc:
                out.append((f"{path.name}:{number}", exc))
    return out


def read_evals(path: Path, run: RunMetrics) -> None:
    """Add pass@1 points from one eval file; a record without a step takes it from a name like eval_step_N."""
    match = re.search(r"step[_-]?(\d+)", path.stem)
    file_step = int(match.group(1)) if match else None
    for where, record in _eval_records(path):
        if isinstance(record, Exception):
            run.malformed.append(f"{where}: {record}")
            continue
        if not isinstance(record, dict):
            run.malformed.append(f"{where}: expected a JSON object, got {type(record).__name__}")
            continue
        step = record.get("step", file_step)
        nested = record.get("pass@k") if isinstance(record.get("pass@k"), dict) else {}
        value = _first({k: v for k, v in record.items() if _number(v) is not None}, PASS_AT_1_KEYS)
        if value is None:
            value = _number(nested.get("1", nested.get(1)))
        if isinstance(step, bool) or not isinstance(step, int) or value is None:
            run.malformed.append(f"{where}: needs an integer 'step' and a numeric 'pass@1'")
            continue
        run.evals[step] = float(value)


def load_run(run_dir: str | Path) -> RunMetrics:
    """Read RUN_DIR/metrics.jsonl and RUN_DIR/eval*.json(l); FileNotFoundError without metrics.jsonl."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} does not exist")
    run = RunMetrics()
    read_metrics(metrics, run)
    for path in sorted([*run_dir.glob("eval*.json"), *run_dir.glob("eval*.jsonl")]):
        read_evals(path, run)
    return run


def _smooth(values: list[float]) -> list[float]:
    window = max(1, len(values) // 20)
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def _figure(title: str, xlabel: str, ylabel: str, curves: list[tuple[str, list[float], list[float]]]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for label, xs, ys in curves:
        if len(xs) >= 20:
            (line,) = ax.plot(xs, ys, alpha=0.3, linewidth=1)
            ax.plot(xs, _smooth(ys), color=line.get_color(), label=f"{label} (moving mean)")
        else:
            ax.plot(xs, ys, marker="o" if len(xs) < 50 else None, markersize=3, label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len(curves) > 1 or len(curves[0][1]) >= 20:
        ax.legend()
    return fig


def plot_run(
    run_dir: str | Path, out_dir: str | Path | None = None
) -> tuple[list[Path], RunMetrics, list[str]]:
    """Write `<panel>_vs_step.png` and `<panel>_vs_time.png` for each panel with data into out_dir.

    out_dir defaults to RUN_DIR/plots. Returns the written paths, the parsed run and a note per skipped plot.
    """
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    hours = run.wall_hours()
    written: list[Path] = []
    skipped: list[str] = []
    for name, (title, ylabel, keys) in PANELS.items():
        by_step = [(k, *run.series(k)) for k in keys]
        by_step = [(k, [float(s) for s in xs], ys) for k, xs, ys in by_step if xs]
        if not by_step:
            skipped.append(f"{name}: no data")
            continue
        by_time = []
        for k, xs, ys in by_step:
            pairs = [(hours[int(s)], y) for s, y in zip(xs, ys, strict=True) if int(s) in hours]
            if pairs:
                by_time.append((k, [p[0] for p in pairs], [p[1] for p in pairs]))
        figures = [("step", "step", by_step), ("time", "wall time (h)", by_time)]
        for suffix, xlabel, curves in figures:
            if not curves:
                skipped.append(f"{name} vs {suffix}: no wall time (rows lack 'time' and 'time_step_s')")
                continue
            path = out / f"{name}_vs_{suffix}.png"
            _figure(title, xlabel, ylabel, curves).savefig(path)
            written.append(path)
    return written, run, skipped
