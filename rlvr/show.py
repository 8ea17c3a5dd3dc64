"""`rlvr show RUN [--step N]`: a step's dumped samples in the terminal, group by group."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path


def dumps(run_dir: Path) -> dict[int, Path]:
    """{step: file} of the sample dumps of a run (`<run>/samples/step_N.jsonl`)."""
    files = (run_dir / "samples").glob("step_*.jsonl")
    return {int(m.group(1)): p for p in files if (m := re.fullmatch(r"step_(\d+)\.jsonl", p.name))}


def render(run_dir: str | Path, step: int | None = None, width: int = 100) -> str:
    """The dump of `step` (default the newest) as text. FileNotFoundError naming the steps that exist."""
    run_dir = Path(run_dir)
    found = dumps(run_dir)
    if not found:
        raise FileNotFoundError(
            f"no sample dumps in {run_dir / 'samples'} (trainer.dump_every > 0 writes them)"
        )
    step = max(found) if step is None else step
    if step not in found:
        raise FileNotFoundError(f"no sample dump for step {step}; dumped steps: {sorted(found)}")
    rows = [json.loads(line) for line in found[step].read_text().splitlines() if line.strip()]
    out, group = [f"{run_dir.name}: step {step}, {len(rows)} samples"], None
    for r in rows:
        if r["group"] != group:
            group = r["group"]
            out += [
                "",
                f"== group {group}: {r['id']} ({r['source']}, verifier {r['verifier']}) gold {r['answer']!r}",
            ]
            out += textwrap.wrap(r["prompt"], width, initial_indent="   ", subsequent_indent="   ")
        verdict = (
            f"-- reward {r['reward']:+g} {r['status']} extracted {r['extracted']!r} ({r['finish_reason']})"
        )
        out += [
            verdict,
            *textwrap.wrap(r["response"] or "(empty)", width, initial_indent="   ", subsequent_indent="   "),
        ]
    return "\n".join(out)
