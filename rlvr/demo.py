"""`make demo`: the CPU recipe as a real Ray job on a local head that this starts and stops.

    python -m rlvr.demo [RECIPE] [key=value ...]

Starts `ray start --head` on loopback and free ports with a fresh token (`rlvr.cluster.local_head`),
submits `rlvr train RECIPE` through the Jobs API (`rlvr submit`, handed that token), streams the job's logs,
stops the head, draws the run's curves (`rlvr plot`) and prints where the metrics, held-out evaluations and
plots are.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rlvr.cluster import local_head
from rlvr.config import load_recipe
from rlvr.plot import plot_run
from rlvr.submit import submit

DEFAULT_RECIPE = "recipes/arithmetic.yaml"


def run_as_job(recipe: str, overrides: Sequence[str], command: str = "train") -> int:
    """`rlvr COMMAND RECIPE OVERRIDES` as a Ray job on a local head started and stopped here; the job's exit
    status (0 iff it succeeded)."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the job runs `rlvr`
    print(f"starting a local Ray head, then `rlvr {command} {recipe}` as a Ray job", flush=True)
    with local_head(env, num_cpus=max(4, os.cpu_count() or 1)) as head:
        for name in ("RAY_AUTH_TOKEN", "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
            os.environ.pop(name, None)  # this client talks to the head just started, with its token
        if head.token_path:
            os.environ["RAY_AUTH_TOKEN_PATH"] = str(head.token_path)
        return submit(recipe, overrides, address=head.address, wait=True, command=command)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    recipe = args.pop(0) if args and not args[0].count("=") else DEFAULT_RECIPE
    run_dir = load_recipe(recipe, args).run.dir.resolve()
    code = run_as_job(recipe, [*args, f"run.output_dir={run_dir}"])
    if code != 0:
        print(f"demo: the job failed (exit {code}); its outputs so far are in {run_dir}")
        return code
    written, _, _ = plot_run(run_dir, None)
    evals = [json.loads(x) for x in (run_dir / "eval.jsonl").read_text().splitlines()]
    first, last = evals[0], evals[-1]
    lift = 100 * (last["pass@1"] - first["pass@1"])
    before, after = first["pass@1"], last["pass@1"]
    print(f"\ndemo: held-out pass@1 {before:.3f} before RL, {after:.3f} after ({lift:+.1f} points)")
    print(f"  metrics: {run_dir / 'metrics.jsonl'}\n  evals:   {run_dir / 'eval.jsonl'}")
    print(f"  model:   {run_dir / 'checkpoints'}\n  plots:   {run_dir / 'plots'} ({len(written)} PNGs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
