"""One learner update (`Learner.train_step`) by how many groups carry a learning signal.

A GRPO group whose samples are all right or all wrong has advantage 0 on every token; with no KL penalty its
PPO loss is 0 for any policy, so its gradient is exactly 0. The learner then runs those micro-batches forward
only (their metrics) and skips the backward. This script times the update of one RL step's batch with the
shortcut and with every backward run, for 0%, 25% and 100% of the groups informative, and checks that both
end at the same weights.

The batch is synthetic (random prompt and response tokens; the cost of an update depends on shapes, not on
the text): `--groups` groups of `--n` samples, prompts of `--prompt-len` and responses of `--response-len`
tokens, micro-batches of `--micro-batch` sequences (the SmolLM2 recipe's shapes by default).

    python benchmarks/learner.py                                   # the imported SmolLM2 checkpoint
    python benchmarks/learner.py --model preset:small              # no checkpoint needed
Results go to benchmarks/results/learner.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the `rollout` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from rlvr.batch import TrainBatch, make_batch  # noqa: E402
from rlvr.learner import Learner, LearnerSpec  # noqa: E402
from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM  # noqa: E402
from rlvr.threads import node_cores  # noqa: E402
from rollout.types import Rollout  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "learner.json"


def load_model(source: str) -> tuple[Megrez2Config, dict[str, torch.Tensor] | None]:
    """`preset:NAME` (random weights) or a Megrez2 checkpoint folder."""
    if source.startswith("preset:"):
        return Megrez2Config.preset(source.removeprefix("preset:")), None
    model = Megrez2ForCausalLM.from_pretrained(source)
    return model.config, model.state_dict()


def synthetic_batch(config: Megrez2Config, args: argparse.Namespace, informative: int) -> TrainBatch:
    """`args.groups` groups of `args.n`; the first `informative` groups have one right sample (advantage
    (n-1)/n vs -1/n, GRPO's mean-centred shape), the rest advantage 0."""
    g = torch.Generator().manual_seed(0)
    rollouts, advantages = [], []
    for p in range(args.groups):
        prompt = torch.randint(3, config.vocab_size, (args.prompt_len,), generator=g).tolist()
        for s in range(args.n):
            response = torch.randint(3, config.vocab_size, (args.response_len,), generator=g).tolist()
            logprobs = (-torch.rand(args.response_len, generator=g) * 3).tolist()
            rollouts.append(Rollout(p, s, prompt, response, logprobs, "length"))
            signal = p < informative
            advantages.append(((args.n - 1) / args.n if s == 0 else -1 / args.n) if signal else 0.0)
    return make_batch(rollouts, torch.tensor(advantages))


def time_update(
    spec: LearnerSpec, state: dict | None, batch: TrainBatch, shortcut: bool
) -> tuple[float, float, Learner]:
    learner = Learner(spec, initial_state=state)
    if not shortcut:
        learner._needs_backward = lambda micros: [True] * len(micros)
    start = time.perf_counter()
    metrics = learner.train_step(batch)
    return time.perf_counter() - start, metrics["backward_skipped"], learner


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "smollm2-megrez2"))
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=96)
    parser.add_argument("--response-len", type=int, default=160)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(node_cores())
    config, state = load_model(args.model)
    spec = LearnerSpec.create(
        config,
        {"lr": 2e-5},
        {"micro_batch_size": args.micro_batch, "old_logprobs": "behaviour"},
        {"temperature": 1.0},
    )
    rows = []
    header = ("informative groups", "shortcut s", "every backward s", "skipped", "speed-up")
    print("{:>18} {:>10} {:>16} {:>8} {:>8}".format(*header))
    time_update(spec, state, synthetic_batch(config, args, args.groups), shortcut=False)  # warm-up
    for informative in (0, args.groups // 4, args.groups):
        batch = synthetic_batch(config, args, informative)
        fast, skipped, a = time_update(spec, state, batch, shortcut=True)
        slow, _, b = time_update(spec, state, batch, shortcut=False)
        same = all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
        if not same:
            raise SystemExit(f"{informative} informative groups: the shortcut changed the update")
        row = {
            "informative_groups": informative,
            "groups": args.groups,
            "shortcut_s": round(fast, 2),
            "every_backward_s": round(slow, 2),
            "backward_skipped": skipped,
            "speedup": round(slow / fast, 2),
            "same_weights": same,
        }
        rows.append(row)
        share = f"{informative} of {args.groups}"
        print(f"{share:>18} {fast:>10.2f} {slow:>16.2f} {skipped:>8.2f} {slow / fast:>7.2f}x")
    record = {
        "model": Path(args.model).name,
        "sequences": args.groups * args.n,
        "prompt_len": args.prompt_len,
        "response_len": args.response_len,
        "micro_batch": args.micro_batch,
        "machine": f"{platform.machine()}, {node_cores()} cores",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
