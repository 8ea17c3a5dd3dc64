"""The `rlvr` command line: train, sft, eval, verify, submit, plot, data, model (`rlvr COMMAND --help`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rlvr.config import PromptConfig, RecipeConfig, RecipeError, load_recipe


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
    from verifiers.pool import VerifierPool, VerifierStartError

    response = sys.stdin.read() if args.response == "-" else args.response
    if not args.reference.strip():
        raise RecipeError("--reference is empty: give the gold answer")
    try:
        sample = json.loads(args.sample) if args.sample else None
    except json.JSONDecodeError as exc:
        raise RecipeError(f"--sample is not JSON: {exc}") from None
    if sample is not None and not isinstance(sample, dict):
        raise RecipeError(
            f"--sample must be a JSON object (the sample's fields), got {type(sample).__name__}"
        )
    # In a worker process with the pool's limits, like a training run: a plug-in that hangs or crashes gives
    # a "timeout" or "error" status, not a stuck or dead command.
    try:
        with VerifierPool(args.verifier, num_workers=1, soft_timeout_s=args.timeout) as pool:
            result = pool.verify(response, args.reference, sample)
    except VerifierStartError as exc:
        raise RecipeError(f"--verifier {args.verifier!r}: {exc.reason}") from None
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
    from rlvr.sft import is_done, run_sft, sft_dir

    config = load_recipe(args.recipe, args.overrides)
    if not config.sft.enabled:
        raise RecipeError(
            "sft.epochs and sft.steps are 0: set one in the recipe or as an override (sft.epochs=2)"
        )
    if is_done(config):
        print(f"already trained on this data and settings: {sft_dir(config)} (sft_done.json); change a "
              "setting or remove that folder to train again")  # fmt: skip
        return 0
    out = run_sft(config)
    print(f"done: {out} (model, tokenizer, metrics.jsonl); train from it with model.path={out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rlvr.data import load_prompts
    from rlvr.evaluate import evaluate, local_sampler, write_result
    from rlvr.seeds import prompt_seeds

    checkpoint, verifier, max_new, engine, prompt = _eval_target(args)
    try:
        rows = load_prompts([args.data], "--data")
    except (ValueError, FileNotFoundError) as exc:
        raise RecipeError(str(exc)) from None
    _check_verifiers(verifier, {r.verifier for r in rows if r.verifier})
    if args.temperature == 0 and args.k != 1:
        print(
            f"--temperature 0 is greedy decoding: one sample per prompt (not --k {args.k})", file=sys.stderr
        )
    with local_sampler(checkpoint, engine, verifier, prompt=_prompt_flags(prompt, args)) as sampler:
        seeds = prompt_seeds(args.seed, "eval", 0, len(rows))
        result = evaluate(rows, sampler, args.k, max_new, seeds, temperature=args.temperature)
    result.update(checkpoint=str(checkpoint), data=str(args.data))
    print(json.dumps(result))
    if args.out:
        write_result(result, Path(args.out))
    return 0


def _eval_target(args: argparse.Namespace) -> tuple[Any, str, int, str, PromptConfig]:
    """(checkpoint, verifier, max new tokens, engine, prompt format) of `rlvr eval`'s target: a checkpoint
    folder with the flags, or a recipe's model (after SFT, if the run has one) with its settings."""
    from pathlib import Path

    target = Path(args.target)
    if not target.exists():
        raise RecipeError(f"{target} does not exist: give a checkpoint folder or a recipe file")
    if target.is_dir():
        if args.overrides:
            raise RecipeError(
                f"overrides {args.overrides} apply to a recipe; {target} is a checkpoint folder"
            )
        checkpoint, verifier, max_new, engine = target, args.verifier, args.max_new_tokens, args.engine
        prompt = PromptConfig()
    else:
        config = load_recipe(target, args.overrides)
        from rlvr.sft import sft_dir

        if not config.model.path and not config.sft.enabled:
            raise RecipeError(
                f"{target} trains from model.preset (no model.path, no sft stage): nothing to load"
            )
        checkpoint = sft_dir(config) if config.sft.enabled else Path(config.model.path)
        verifier = args.verifier or config.verifier.name
        max_new = args.max_new_tokens or config.rollout.max_new_tokens
        engine, prompt = args.engine or config.rollout.engine, config.data.prompt
    if not (checkpoint / "config.json").exists():
        raise RecipeError(f"no checkpoint at {checkpoint} (config.json missing): give a checkpoint folder")
    return checkpoint, verifier or "math", max_new or 256, engine or "vllm", prompt


def _check_verifiers(default: str, named_by_rows: set[str]) -> None:
    """Every verifier an evaluation will use resolves, before any model is loaded."""
    from verifiers import get_verifier

    for name in [default, *sorted(named_by_rows - {default})]:
        try:
            get_verifier(name)
        except (ValueError, TypeError, ImportError) as exc:
            where = "--verifier" if name == default else "a verifier named by rows of --data"
            raise RecipeError(f"{where}: {exc}") from None


def _prompt_flags(prompt: PromptConfig, args: argparse.Namespace) -> PromptConfig:
    """The prompt format with `rlvr eval`'s --template / --system-prompt / --instruction applied."""
    flags = {"template": args.template, "system_prompt": args.system_prompt, "instruction": args.instruction}
    return prompt.model_copy(update={k: v for k, v in flags.items() if v is not None})


def cmd_data_build(args: argparse.Namespace) -> int:
    from rlvr.data.build import DataBuildConfig, build

    config = load_recipe(args.recipe, args.overrides, schema=DataBuildConfig)
    card = build(config)
    malformed = sum(d["rows"] for d in card["dropped"] if d["reason"].startswith("malformed"))
    print(f"wrote {card['output_rows']} prompts to {config.output_dir} ({', '.join(card['files'])})")
    if "heldout" in card:
        print(f"held out {card['heldout']['rows']} rows for evaluation (heldout.parquet), never trained on")
    print(
        f"{malformed} malformed source rows dropped; every drop by stage, source and reason in data_card.md"
    )
    return 0


def cmd_data_sft(args: argparse.Namespace) -> int:
    from rlvr.data.sft_set import SFTDataConfig, build_sft_set, summary

    config = load_recipe(args.recipe, args.overrides, schema=SFTDataConfig)
    print(summary(build_sft_set(config)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from rlvr.show import render

    try:
        print(render(args.run_dir, args.step))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    _add_recipe_commands(commands)
    _add_eval_command(commands)
    _add_tool_commands(commands)
    return parser


def _recipe_command(commands: Any, name: str, help: str, recipe_help: str, func: Any) -> Any:
    command = commands.add_parser(name, help=help)
    command.add_argument("recipe", help=recipe_help)
    command.add_argument("overrides", nargs="*", help="dotted overrides such as rollout.n=8 trainer.steps=5")
    command.set_defaults(func=func)
    return command


def _add_recipe_commands(commands: Any) -> None:
    """train, submit and sft: each takes a recipe and dotted overrides."""
    train = _recipe_command(
        commands, "train", "run (or, with --dry-run, validate) a training recipe", "YAML recipe", cmd_train
    )
    train.add_argument("--dry-run", action="store_true", help="validate and print the plan; start nothing")
    submit = _recipe_command(
        commands,
        "submit",
        "run a recipe as a Ray job on a cluster (streams its logs)",
        "YAML recipe inside the working directory, e.g. recipes/rlvr.yaml",
        cmd_submit,
    )
    submit.add_argument(
        "--address", help="Ray Jobs API (dashboard) address; default $RAY_ADDRESS or http://127.0.0.1:8265"
    )
    submit.add_argument("--no-wait", action="store_true", help="print the job id and return after submitting")
    _recipe_command(
        commands,
        "sft",
        "supervised warm start on worked solutions (the recipe's sft section)",
        "YAML recipe with an sft section",
        cmd_sft,
    )


def _add_eval_command(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval", help="pass@1, pass@k and maj@k of a checkpoint (or a recipe's model)"
    )
    evaluate.add_argument("target", help="checkpoint folder, or a recipe (uses its SFT/model checkpoint)")
    evaluate.add_argument("overrides", nargs="*", help="dotted overrides for a recipe target")
    evaluate.add_argument(
        "--data",
        required=True,
        help="prompt set (.parquet/.jsonl/.json), a public file as published (GSM8K, MATH, AQuA, MMLU) or task://",
    )
    evaluate.add_argument(
        "--engine", choices=["vllm", "torch"], help="rollout engine; default the recipe's, else vllm"
    )
    evaluate.add_argument("--k", type=_positive(int), default=4, help="samples per prompt (pass@k, maj@k)")
    evaluate.add_argument(
        "--temperature",
        type=_not_negative(float),
        default=1.0,
        help="sampling temperature; 0 is greedy decoding, one sample per prompt (k = 1)",
    )
    evaluate.add_argument(
        "--verifier", help="verifier for rows that name none; default the recipe's, else math"
    )
    evaluate.add_argument(
        "--max-new-tokens", type=_positive(int), help="response cap; default the recipe's, else 256"
    )
    evaluate.add_argument(
        "--template",
        choices=["raw", "chat"],
        help="prompt format; default the recipe's data.prompt, else raw",
    )
    evaluate.add_argument("--system-prompt", help="chat template: a system turn before each prompt")
    evaluate.add_argument("--instruction", help="appended to every prompt on a new line")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", help="append the result as a JSON line to this file")
    evaluate.set_defaults(func=cmd_eval)


def _add_tool_commands(commands: Any) -> None:
    """verify, show, plot, data build and data sft."""
    verify = commands.add_parser("verify", help="verify one response against a reference answer")
    verify.add_argument("response", help="the model's response text ('-' reads standard input)")
    verify.add_argument("--reference", required=True, help="the gold answer")
    verify.add_argument("--verifier", default="math", help="registered name, entry point or pkg.module:obj")
    verify.add_argument("--sample", help="the sample as JSON (e.g. choices for the choice verifier)")
    verify.add_argument(
        "--timeout",
        type=_positive(float),
        default=5.0,
        help="soft limit (s) of the VerifierPool worker the verifier runs in (default 5, as in training)",
    )
    verify.add_argument("--json", action="store_true", help="print the Result as JSON")
    verify.set_defaults(func=cmd_verify)

    show = commands.add_parser("show", help="print a step's sample dump: prompts, responses, rewards")
    show.add_argument("run_dir", help="run directory (its samples/ folder)")
    show.add_argument("--step", type=int, help="the step; default the newest dump")
    show.set_defaults(func=cmd_show)

    plot = commands.add_parser("plot", help="write PNG curves of a run's metrics into RUN_DIR/plots")
    plot.add_argument("run_dir", help="run directory holding metrics.jsonl (and eval*.json)")
    plot.add_argument("--out", help="output folder; default RUN_DIR/plots")
    plot.set_defaults(func=cmd_plot)

    data = commands.add_parser("data", help="build prompt sets").add_subparsers(
        dest="data_command", required=True
    )
    build = data.add_parser("build", help="build a verified, difficulty-balanced prompt set from a recipe")
    build.add_argument("recipe", help="YAML data recipe, e.g. recipes/data.yaml")
    build.add_argument("overrides", nargs="*", help="dotted overrides such as difficulty.k=4")
    build.set_defaults(func=cmd_data_build)
    sft = data.add_parser("sft", help="build the SFT set: worked solutions as chat, with a data card")
    sft.add_argument("recipe", help="YAML SFT data recipe, e.g. recipes/smollm2-sft-data.yaml")
    sft.add_argument("overrides", nargs="*", help="dotted overrides such as two_problem_conversations=0")
    sft.set_defaults(func=cmd_data_sft)
    _add_model_commands(commands)


def _add_model_commands(commands: Any) -> None:
    from rlvr.model.import_cli import add_import_arguments

    model = commands.add_parser("model", help="bring models into Megrez2 form").add_subparsers(
        dest="model_command", required=True
    )
    model_import = model.add_parser(
        "import", help="a Llama-family HF folder, GGUF file or package as an upcycled Megrez2 checkpoint"
    )
    add_import_arguments(model_import)
    model_import.set_defaults(func=cmd_model_import)


def _positive(kind: type) -> Any:
    """An argparse type: a finite number of `kind` above 0 (an infinite time limit is no limit)."""
    return _number(kind, lambda value: 0 < value < float("inf"), "must be a finite number above 0")


def _not_negative(kind: type) -> Any:
    """An argparse type: a number of `kind` at or above 0."""
    return _number(kind, lambda value: value >= 0, "must be 0 or above")


def _number(kind: type, ok: Any, requirement: str) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if not ok(value):  # NaN fails every comparison, so it is refused too
            raise argparse.ArgumentTypeError(f"{requirement}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its message
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # dotted overrides may also come after a flag (`train r.yaml --dry-run rollout.n=4`)
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides += extra
    elif extra:  # name the flags that are wrong, not the overrides beside them
        parser.error(f"unrecognized arguments: {' '.join([x for x in extra if x.startswith('-')] or extra)}")
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
