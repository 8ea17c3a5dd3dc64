"""The learner's update of one RL step, before and after issue 24's changes, on the SmolLM2 recipe's shapes.

One step's batch: `--groups` prompts × `--n` samples, prompts of `--prompt-len` tokens, responses of 30 to
`--response-len` tokens (spread evenly, as a real step's are: padding to the longest costs something), random
tokens (the cost depends on shapes, not on the text). Two regimes: `informative`, every group has a learning
signal (GRPO's mean-centred advantages, one right sample in n); `natural`, one group in eight has one (as
the imported model's first steps, which get almost everything wrong). Variants, each in a fresh process
(its peak RSS its own), from the same weights, old_logprobs recompute, one PPO epoch, one minibatch:

  before   the previous learner, re-run here: right-padded to the step's longest sequence, micro-batches of 4
           sequences, the LM head on every position with the full fp32 logits (and their processed and
           log-softmax copies), a separate no-grad forward for the old log-probs, zero-advantage
           micro-batches forward only;
  packed   micro-batches packed to `algorithm.micro_batch_tokens` with no padding, log-probs from the last
           hidden state in chunks (no logits tensor), the old log-probs from the update's own forward;
  shared   packed, and each group's prompt computed once (`algorithm.share_prompt`, the default).

    python benchmarks/learner.py                          # the imported SmolLM2 checkpoint
    python benchmarks/learner.py --model preset:small     # no checkpoint needed
Results go to benchmarks/results/learner.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the `rollout` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from rlvr.algorithm import entropy_from_logits, ppo_loss  # noqa: E402
from rlvr.batch import TrainBatch, make_batch  # noqa: E402
from rlvr.learner import Learner, LearnerSpec  # noqa: E402
from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM  # noqa: E402
from rlvr.model.sampling import processed_logits, sampled_logprobs  # noqa: E402
from rlvr.threads import node_cores  # noqa: E402
from rollout.types import Rollout  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "learner.json"
VARIANTS = ("before", "packed", "shared")
REGIMES = {"informative": 1.0, "natural": 1 / 8}


def load_model(source: str) -> tuple[Megrez2Config, dict[str, torch.Tensor] | None]:
    """`preset:NAME` (random weights) or a Megrez2 checkpoint folder."""
    if source.startswith("preset:"):
        return Megrez2Config.preset(source.removeprefix("preset:")), None
    model = Megrez2ForCausalLM.from_pretrained(source)
    return model.config, model.state_dict()


def synthetic_batch(config: Megrez2Config, args: argparse.Namespace, informative: float) -> TrainBatch:
    """The step's batch (see the module docstring); the first `informative` share of groups has signal."""
    g = torch.Generator().manual_seed(0)
    rollouts, advantages = [], []
    sequences = args.groups * args.n
    for p in range(args.groups):
        prompt = torch.randint(3, config.vocab_size, (args.prompt_len,), generator=g).tolist()
        for s in range(args.n):
            length = 30 + (args.response_len - 30) * ((p * args.n + s) * 37 % sequences) // (sequences - 1)
            response = torch.randint(3, config.vocab_size, (length,), generator=g).tolist()
            logprobs = (-torch.rand(length, generator=g) * 3).tolist()
            rollouts.append(Rollout(p, s, prompt, response, logprobs, "length"))
            signal = p < round(informative * args.groups)
            advantages.append(((args.n - 1) / args.n if s == 0 else -1 / args.n) if signal else 0.0)
    return make_batch(rollouts, torch.tensor(advantages))


def before_update(learner: Learner, batch: TrainBatch, micro: int = 4) -> None:
    """The previous learner's update (padded micro-batches of `micro` sequences, full logits)."""
    model, rows = learner.model, torch.arange(len(batch)).split(micro)

    def scored(m: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = processed_logits(model(m.input_ids, attention_mask=m.attention_mask).logits[:, :-1])
        return logits, sampled_logprobs(logits, m.input_ids[:, 1:])

    with torch.no_grad():
        batch.old_logp = torch.cat([scored(batch.rows(r))[1] for r in rows])
    learner.optimizer.zero_grad(set_to_none=True)
    count = batch.response_mask.sum()
    for r in rows:
        m = batch.rows(r)
        grad = bool((m.advantages != 0).any())
        with torch.enable_grad() if grad else torch.no_grad():
            logits, logp = scored(m)
            mask = m.response_mask.bool()
            loss, _ = ppo_loss(
                logp, m.old_logp, m.advantages, mask, clip_low=0.2, clip_high=0.2, num_tokens=count
            )
            entropy_from_logits(logits.detach())
        if grad:
            loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    learner.optimizer.step()


def run_one(args: argparse.Namespace) -> None:
    """One variant in this process: prints a JSON line with its seconds and peak RSS."""
    torch.set_num_threads(node_cores())
    config, state = load_model(args.model)
    algorithm = {"micro_batch_tokens": args.micro_batch_tokens, "share_prompt": args.variant == "shared"}
    spec = LearnerSpec.create(config, {"lr": 2e-5}, algorithm, {"temperature": 1.0})
    learner = Learner(spec, initial_state=state)
    batch = synthetic_batch(config, args, REGIMES[args.regime])
    start = time.perf_counter()
    if args.variant == "before":
        before_update(learner, batch)
        skipped = None
    else:
        skipped = learner.train_step(batch)["backward_skipped"]
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    tokens = int(batch.attention_mask.sum())
    print(
        json.dumps({"seconds": seconds, "peak_rss_gib": peak, "tokens": tokens, "backward_skipped": skipped})
    )


def measure(args: argparse.Namespace, variant: str, regime: str) -> dict:
    command = [sys.executable, __file__, "--run", variant, "--regime", regime, "--model", args.model]
    command += ["--groups", str(args.groups), "--n", str(args.n), "--prompt-len", str(args.prompt_len)]
    command += [
        "--response-len",
        str(args.response_len),
        "--micro-batch-tokens",
        str(args.micro_batch_tokens),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return {"variant": variant, "regime": regime, **json.loads(out.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "smollm2-megrez2"))
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=93)
    parser.add_argument("--response-len", type=int, default=160)
    parser.add_argument("--micro-batch-tokens", type=int, default=4096)
    parser.add_argument("--regimes", default="informative,natural")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--run", dest="variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--regime", choices=list(REGIMES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        return run_one(args)
    rows = []
    print(
        f"{'regime':>12} {'variant':>8} {'update s':>9} {'tokens/s':>9} {'peak RSS GiB':>13} {'vs before':>9}"
    )
    for regime in args.regimes.split(","):
        for variant in args.variants.split(","):
            row = measure(args, variant, regime)
            base = next(
                (r["seconds"] for r in rows if r["regime"] == regime and r["variant"] == "before"), None
            )
            row["speedup_vs_before"] = round(base / row["seconds"], 2) if base else None
            rows.append(row)
            speed = f"{row['speedup_vs_before']:.2f}x" if base else "-"
            print(
                f"{regime:>12} {variant:>8} {row['seconds']:>9.1f} {row['tokens'] / row['seconds']:>9.0f} "
                f"{row['peak_rss_gib']:>13.2f} {speed:>9}",
                flush=True,
            )
    record = {
        "model": Path(args.model).name,
        "groups": args.groups,
        "n": args.n,
        "prompt_len": args.prompt_len,
        "response_len": f"30..{args.response_len}",
        "micro_batch_tokens": args.micro_batch_tokens,
        "machine": f"{platform.machine()}, {node_cores()} cores, torch {torch.__version__}",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
