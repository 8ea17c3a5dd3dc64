"""The `rlvr` command line: `rlvr train RECIPE [key=value ...] [--dry-run]`, `rlvr verify ...`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rlvr.config import RecipeConfig, RecipeError, load_recipe


def cmd_train(args: argparse.Namespace) -> int:
    config = load_recipe(args.recipe, args.overrides)
    print(f"recipe {args.recipe} (resolved)\n{config.summary()}")
    from rlvr.plan import check_recipe

    report = check_recipe(config)
    print(report.text())
    if not report.ok:
        return 2
    if args.dry_run:
        print("dry run: recipe is valid; nothing was started")
        return 0
    return _train(config)


def _train(config: RecipeConfig) -> int:
    from rlvr.trainer import train

    metrics = train(config)
    print(f"done: {config.run.dir} (metrics.jsonl, checkpoints/); last step: {json.dumps(metrics)}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from verifiers import get_verifier

    response = sys.stdin.read() if args.response == "-" else args.response
    sample = json.loads(args.sample) if args.sample else None
    if args.timeout is None:
        result = get_verifier(args.verifier).verify(response, args.reference, sample)
    else:
        from verifiers import VerifierPool

        with VerifierPool(args.verifier, num_workers=1, soft_timeout_s=args.timeout) as pool:
            result = pool.verify(response, args.reference, sample)
    print(json.dumps(result.to_dict()) if args.json else result)
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from rlvr.submit import SubmitError, submit

    try:
        return submit(args.recipe, args.overrides, address=args.address, wait=not args.no_wait)
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_plot(args: argparse.Namespace) -> int:
    from rlvr.plot import plot_run

    try:
        written, run, skipped = plot_run(args.run_dir, args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    for note in skipped:
        print(f"skipped {note}")
    if run.malformed:
        print(f"warning: {len(run.malformed)} malformed line(s) not plotted:", file=sys.stderr)
        for problem in run.malformed:
            print(f"  {problem}", file=sys.stderr)
    return 0 if written else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlvr", description="RL with verifiable rewards for MoE models, on Ray."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="run (or, with --dry-run, validate) a training recipe")
    train.add_argument("recipe", help="YAML recipe, e.g. recipes/tiny.yaml")
    train.add_argument("overrides", nargs="*", help="dotted overrides such as rollout.n=8 trainer.steps=5")
    train.add_argument("--dry-run", action="store_true", help="validate and print the plan; start nothing")
    train.set_defaults(func=cmd_train)

    verify = commands.add_parser("verify", help="verify one response against a reference answer")
    verify.add_argument("response", help="the model's response text ('-' reads standard input)")
    verify.add_argument("--reference", required=True, help="the gold answer")
    verify.add_argument("--verifier", default="math", help="registered name, entry point or pkg.module:obj")
    verify.add_argument("--sample", help="the sample as JSON (e.g. choices for the choice verifier)")
    verify.add_argument("--timeout", type=float, help="run in a VerifierPool worker with this soft limit (s)")
    verify.add_argument("--json", action="store_true", help="print the Result as JSON")
    verify.set_defaults(func=cmd_verify)

    submit = commands.add_parser("submit", help="run a recipe as a Ray job on a cluster (streams its logs)")
    submit.add_argument("recipe", help="YAML recipe inside the working directory, e.g. recipes/rlvr.yaml")
    submit.add_argument("overrides", nargs="*", help="dotted overrides, passed on to `rlvr train`")
    submit.add_argument(
        "--address", help="Ray Jobs API (dashboard) address; default $RAY_ADDRESS or http://127.0.0.1:8265"
    )
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return after submitting")
    submit.set_defaults(func=cmd_submit)

    plot = commands.add_parser("plot", help="write PNG curves of a run's metrics into RUN_DIR/plots")
    plot.add_argument("run_dir", help="run directory holding metrics.jsonl (and eval*.json)")
    plot.add_argument("--out", help="output folder; default RUN_DIR/plots")
    plot.set_defaults(func=cmd_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        if args.command != "verify":
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
