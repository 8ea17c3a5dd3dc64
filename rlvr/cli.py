"""The `rlvr` command line: train, sft, eval, verify, submit, plot, data, model (`rlvr COMMAND --help`)."""

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


def cmd_sft(args: argparse.Namespace) -> int:
    from rlvr.sft import run_sft

    config = load_recipe(args.recipe, args.overrides)
    if config.sft.steps == 0:
        raise RecipeError("sft.steps is 0: set it in the recipe or as an override (sft.steps=300)")
    out = run_sft(config)
    print(f"done: {out} (model, tokenizer, metrics.jsonl); train from it with model.path={out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rlvr.data import read_prompt_file
    from rlvr.evaluate import evaluate, write_result
    from rlvr.model.megrez2 import Megrez2ForCausalLM
    from rlvr.tokenizer import load_tokenizer
    from rollout.torch_engine import TorchEngine
    from verifiers import VerifierPool

    target = Path(args.target)
    if target.is_dir():  # a checkpoint folder
        checkpoint, verifier, max_new = target, args.verifier, args.max_new_tokens
    else:  # a recipe: its model (after SFT, if the run has one) and its verifier
        config = load_recipe(target, args.overrides)
        from rlvr.sft import sft_dir

        warm = sft_dir(config)
        checkpoint = Path(config.model.path) if config.model.path else warm
        verifier, max_new = (
            args.verifier or config.verifier.name,
            args.max_new_tokens or config.rollout.max_new_tokens,
        )
    if not (checkpoint / "config.json").exists():
        raise RecipeError(f"no checkpoint at {checkpoint} (config.json missing): give a checkpoint folder")
    prompts = read_prompt_file(args.data)
    for problem in prompts.problems:
        print(f"warning: {args.data}: malformed {problem}", file=sys.stderr)
    tokenizer = load_tokenizer(checkpoint)
    engine = TorchEngine(Megrez2ForCausalLM.from_pretrained(checkpoint), eos_token_id=tokenizer.eos_token_id)
    with VerifierPool(verifier or "math", num_workers=1) as pool:
        result = evaluate(
            prompts.rows,
            tokenizer,
            engine.generate,
            pool.verify_batch,
            args.k,
            max_new or 256,
            seed=args.seed,
        )
    result.update(checkpoint=str(checkpoint), data=str(args.data), malformed=prompts.malformed)
    print(json.dumps(result))
    if args.out:
        write_result(result, Path(args.out))
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from rlvr.data.build import DataBuildConfig, build

    config = load_recipe(args.recipe, args.overrides, schema=DataBuildConfig)
    card = build(config)
    print(f"wrote {card['output_rows']} prompts to {config.output_dir} (prompts.parquet, data_card.md/.json)")
    return 0


def cmd_model_import(args: argparse.Namespace) -> int:
    from rlvr.model.import_cli import run_import

    return run_import(args)


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

    sft = commands.add_parser(
        "sft", help="supervised warm start on worked solutions (the recipe's sft section)"
    )
    sft.add_argument("recipe", help="YAML recipe with an sft section, e.g. recipes/tiny.yaml")
    sft.add_argument("overrides", nargs="*", help="dotted overrides such as sft.steps=300")
    sft.set_defaults(func=cmd_sft)

    evaluate = commands.add_parser("eval", help="pass@1 and pass@k of a checkpoint (or a recipe's model)")
    evaluate.add_argument("target", help="checkpoint folder, or a recipe (uses its SFT/model checkpoint)")
    evaluate.add_argument("overrides", nargs="*", help="dotted overrides for a recipe target")
    evaluate.add_argument("--data", required=True, help="prompt file (.jsonl/.json/.parquet) or task://...")
    evaluate.add_argument("--k", type=int, default=4, help="samples per prompt at temperature 1.0")
    evaluate.add_argument("--verifier", help="verifier spec; default the recipe's, else math")
    evaluate.add_argument("--max-new-tokens", type=int, help="response cap; default the recipe's, else 256")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", help="append the result as a JSON line to this file")
    evaluate.set_defaults(func=cmd_eval)

    plot = commands.add_parser("plot", help="write PNG curves of a run's metrics into RUN_DIR/plots")
    plot.add_argument("run_dir", help="run directory holding metrics.jsonl (and eval*.json)")
    plot.add_argument("--out", help="output folder; default RUN_DIR/plots")
    plot.set_defaults(func=cmd_plot)

    data = commands.add_parser("data", help="build prompt sets").add_subparsers(
        dest="data_command", required=True
    )
    data_build = data.add_parser(
        "build", help="build a verified, difficulty-balanced prompt set from a recipe"
    )
    data_build.add_argument("recipe", help="YAML data recipe, e.g. recipes/data.yaml")
    data_build.add_argument("overrides", nargs="*", help="dotted overrides such as difficulty.k=4")
    data_build.set_defaults(func=cmd_data_build)

    from rlvr.model.import_cli import add_import_arguments

    model = commands.add_parser("model", help="bring models into Megrez2 form").add_subparsers(
        dest="model_command", required=True
    )
    model_import = model.add_parser(
        "import", help="a Llama-family HF folder, GGUF file or package as an upcycled Megrez2 checkpoint"
    )
    add_import_arguments(model_import)
    model_import.set_defaults(func=cmd_model_import)
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
