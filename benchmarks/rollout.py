"""Rollout throughput: the vLLM engine, the torch engine and a plain generate loop, side by side.

For each preset (random weights, fp32 on CPU) the same prompts are sampled n times at temperature 1.0 by

  vllm        VLLMEngine: rlvr's MegrezMoeForCausalLM in vLLM (paged KV cache, continuous batching, the
              n samples of a prompt share its prefill through the prefix cache), in-process;
  torch       TorchEngine: all samples as one left-padded batch with the native module's KV cache;
  plain_loop  an HF-style `generate`: one sequence at a time, each sample prefilling its prompt again, a
              KV cache only within the sequence (no batching, nothing shared across samples).

Generated tokens/s counts the tokens actually produced (EOS can end a sample early). Weight sync is the
learner -> engine path the trainer uses (`update_weights` with the full native state dict, vLLM's in-place
reload, prefix cache reset), timed over several syncs and reported per GB of weights. Each preset runs in a
fresh subprocess (one vLLM engine per process).

    python benchmarks/rollout.py                         # tiny and small
    python benchmarks/rollout.py --presets tiny --prompts 8
Results go to benchmarks/results/rollout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the `rollout` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from rlvr.model.megrez2 import KVCache, Megrez2Config, Megrez2ForCausalLM, parameter_counts  # noqa: E402
from rollout.torch_engine import TorchEngine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "rollout.json"
# (prompts, samples per prompt, new tokens, plain-loop sequences measured) per preset
WORKLOADS = {"tiny": (32, 8, 64, 32), "small": (32, 8, 64, 8)}  # 32 x 8: an RL step of the CPU recipe


def make_prompts(count: int, vocab: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(3, vocab, (int(n),), generator=g).tolist()
        for n in torch.randint(16, 48, (count,), generator=g)
    ]


@torch.no_grad()
def plain_generate(model: Megrez2ForCausalLM, prompt: list[int], max_new_tokens: int, eos: int) -> int:
    """One sampled sequence, HF `generate` style: prefill, then one token at a time; returns tokens made."""
    cache = KVCache.allocate(model.config, 1, len(prompt) + max_new_tokens, torch.float32, "cpu")
    logits = model(torch.tensor([prompt]), cache=cache).logits[:, -1]
    for t in range(max_new_tokens):
        token = torch.multinomial(torch.softmax(logits.float(), -1), 1)
        if int(token) == eos or t == max_new_tokens - 1:
            return t + 1
        logits = model(token, cache=cache).logits[:, -1]
    return max_new_tokens


def measure(preset: str, prompts_n: int | None) -> dict:
    from rollout.vllm_engine import VLLMEngine

    torch.manual_seed(0)
    config = Megrez2Config.preset(preset)
    count, n, new_tokens, plain_sequences = WORKLOADS[preset]
    count = prompts_n or count
    prompts = make_prompts(count, config.vocab_size)
    eos = 2
    model = Megrez2ForCausalLM(config).eval()
    state = model.state_dict()
    gigabytes = sum(t.numel() * t.element_size() for t in state.values()) / 1e9
    row: dict = {
        "preset": preset,
        "params": parameter_counts(config)["stored"],
        "prompts": count,
        "n": n,
        "max_new_tokens": new_tokens,
        "weights_gb": gigabytes,
    }

    start = time.perf_counter()
    engine = VLLMEngine.from_state(config, state, eos, dtype="float32", seed=0)
    row["vllm_start_s"] = time.perf_counter() - start
    engine.generate(prompts[:2], 2, 8, seed=1)  # warm-up
    start = time.perf_counter()
    made = sum(len(r.response_ids) for r in engine.generate(prompts, n, new_tokens, seed=2))
    row["vllm_tokens_per_s"] = made / (time.perf_counter() - start)

    torch_engine = TorchEngine(model, eos_token_id=eos)
    torch_engine.generate(prompts[:2], 2, 8, seed=1)
    start = time.perf_counter()
    made = sum(len(r.response_ids) for r in torch_engine.generate(prompts, n, new_tokens, seed=2))
    row["torch_tokens_per_s"] = made / (time.perf_counter() - start)

    # the plain loop is slow: time a subset of the same sequences (samples of the first prompts)
    jobs = [prompts[i // n] for i in range(plain_sequences)]
    start = time.perf_counter()
    made = sum(plain_generate(model, p, new_tokens, eos) for p in jobs)
    row["plain_loop_tokens_per_s"] = made / (time.perf_counter() - start)
    row["vllm_vs_plain_loop"] = row["vllm_tokens_per_s"] / row["plain_loop_tokens_per_s"]
    row["vllm_vs_torch"] = row["vllm_tokens_per_s"] / row["torch_tokens_per_s"]

    syncs = []
    for i in range(5):
        new_state = {k: v + 1e-3 * (i + 1) if v.is_floating_point() else v for k, v in state.items()}
        syncs.append(engine.update_weights(new_state))
    row["sync_s"] = statistics.median(syncs[1:])  # the first reload also builds vLLM's reload bookkeeping
    row["sync_first_s"] = syncs[0]
    row["sync_s_per_gb"] = row["sync_s"] / gigabytes
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument(
        "--prompts", type=int, default=None, help="prompts per preset (default: the workload's)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one preset, result as JSON
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure(args.one, args.prompts)), flush=True)
        return
    rows = []
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    for preset in args.presets:
        cmd = [sys.executable, __file__, "--one", preset]
        if args.prompts:
            cmd += ["--prompts", str(args.prompts)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{preset}: measurement failed (exit {proc.returncode})")
        rows.append(json.loads(line.removeprefix("RESULT ")))
    print(
        f"{'preset':<7} {'params':>8} {'prompts x n':>11} {'vllm tok/s':>11} {'torch tok/s':>12} "
        f"{'plain tok/s':>12} {'vllm/plain':>10} {'sync s':>7} {'s/GB':>6}"
    )
    for r in rows:
        print(
            f"{r['preset']:<7} {r['params'] / 1e6:>7.1f}M {r['prompts']:>5} x {r['n']:<3} "
            f"{r['vllm_tokens_per_s']:>11.0f} {r['torch_tokens_per_s']:>12.0f} "
            f"{r['plain_loop_tokens_per_s']:>12.0f} "
            f"{r['vllm_vs_plain_loop']:>9.1f}x {r['sync_s']:>7.3f} {r['sync_s_per_gb']:>6.2f}"
        )
    import vllm

    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "vllm": vllm.__version__,
        },
        "targets": {"vllm_vs_plain_loop_small": 10.0, "sync_s_tiny": 0.1},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
