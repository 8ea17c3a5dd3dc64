"""Dataset-builder throughput: items/s per stage on all of the public data beside the repository.

Runs stages 1-4 of `rlvr data build recipes/data.yaml` (read + adapt, multiple choice to open-ended +
verifiability filter, dedupe, decontamination; difficulty needs a real model and is off) with `num_proc`
workers, and reports rows in, rows out, seconds and items/s per stage, the driver's peak RSS and the peak of
the driver and its `datasets.map` workers together (sampled every 0.2 s), and the machine's load average.

    python benchmarks/data.py [--num-proc 2]
Results go to benchmarks/results/data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and benchmarks/verifiers.py would shadow `verifiers`.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from benchmarks.tree_memory import TreeMemory  # noqa: E402
from rlvr.config import load_recipe  # noqa: E402
from rlvr.data.build import DataBuildConfig, build  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "data.json"  # --copies N writes data_xN.json


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=str(REPO / "recipes/data.yaml"))
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument(
        "--copies", type=int, default=1, help="read every source this many times (scale test: 28 ≈ 1M rows)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.copies > 1 and args.out == RESULTS:
        args.out = RESULTS.with_name(f"data_x{args.copies}.json")
    os.chdir(REPO)  # the recipe's paths are relative to the repository
    with tempfile.TemporaryDirectory() as tmp:
        config = load_recipe(
            args.recipe,
            [f"output_dir={tmp}", "difficulty.enabled=false", f"num_proc={args.num_proc}"],
            schema=DataBuildConfig,
        )
        if args.copies > 1:  # the copies are exact duplicates: stages 1-3 see them all, dedupe drops them
            config.sources = [
                s.model_copy(update={"name": f"{s.name}{'' if i == 0 else f'_copy{i}'}"})
                for i in range(args.copies)
                for s in config.sources
            ]
        load_before = os.getloadavg()
        with TreeMemory(os.getpid()) as memory:
            card = build(config)
        load_after = os.getloadavg()
    rows_in = sum(card["input_rows"].values())
    table = []
    for stage in card["stages"]:
        seconds = card["seconds"][stage["stage"]]
        table.append(
            {
                "stage": stage["stage"],
                "rows_in": rows_in,
                "rows_out": stage["rows_out"],
                "seconds": seconds,
                "items_per_s": rows_in / seconds if seconds else None,
            }
        )
        rows_in = stage["rows_out"]
    print(f"{'stage':<14} {'rows in':>8} {'rows out':>9} {'seconds':>8} {'items/s':>9}")
    for r in table:
        print(
            f"{r['stage']:<14} {r['rows_in']:>8} {r['rows_out']:>9} {r['seconds']:>8.2f} "
            f"{r['items_per_s'] or 0:>9.0f}"
        )
    tree_mb = memory.peak_rss / 2**20
    print(
        f"total {card['seconds']['total']:.1f} s, peak RSS {card['peak_rss_mb']:.0f} MB (driver), "
        f"{tree_mb:.0f} MB (driver + workers); load average {load_before[0]:.1f} -> {load_after[0]:.1f}"
    )
    dropped: dict[str, int] = {}
    for d in card["dropped"]:
        dropped[d["reason"].split(":")[0]] = dropped.get(d["reason"].split(":")[0], 0) + d["rows"]
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        },
        "num_proc": args.num_proc,
        "copies": args.copies,
        "input_rows": card["input_rows"],
        "stages": table,
        "dropped_by_reason": dropped,
        "output_rows": card["output_rows"],
        "output_by_source": card["output_by_source"],
        "total_seconds": card["seconds"]["total"],
        "peak_rss_mb": card["peak_rss_mb"],
        "peak_rss_with_workers_mb": round(tree_mb, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
