"""Megrez2 training throughput: the optimised MoE module against the HF remote-code expert loop.

Each measurement is forward + backward of the whole model on a next-token loss, run in a fresh subprocess so
that its peak memory is its own. Variants:

  optimised   rlvr's RoutedExperts with its default kernel ("auto"): on CPU "fused", one autograd node for
              dispatch, experts and combine that runs expert by expert on single-threaded workers; on CUDA
              token-slots sorted by expert and one grouped GEMM per projection (torch's grouped_mm).
  grouped_mm  (CPU, in the alternating runs) the same module with kernel "grouped_mm", the CPU default before
              the fused kernel: a grouped GEMM per projection, autograd between them.
  hf_loop     the training-path expert loop of DeepSeek-V2-lineage HF remote code (Megrez2's config is of
              that family; its own remote code was not available to check): per-expert nn.Linear modules,
              every expert visited, its tokens picked with a boolean mask, `y[mask] = expert(x[mask])`, then a
              weighted sum over the k copies.

Both variants start from the same weights and data. Before timing, the hf_loop process checks that its logits
equal the optimised module's on the same experts (relative error 1e-5 in fp32). On CUDA the model
runs in bf16 (bf16 parameters, or fp32 parameters under bf16 autocast with `amp`), optionally under
torch.compile, and MFU is reported against both the H100 SXM datasheet dense bf16 peak (989.4 TFLOP/s) and a
bf16 matmul peak measured in the same run. FLOPs counted: 6 x activated matmul parameters per token (lm_head
included, the embedding lookup not, k routed + shared experts and the router per MoE layer) plus causal
attention, 3 x 2 x 2 x head_dim x heads x (T+1)/2 per token per layer; activation recompute is not counted.

A second table times one routed-expert bank alone (dispatch, experts, combine; forward + backward, the routing
weights' gradient included), the variants alternating step by step in one process, so that the ratio survives
a machine shared with other work; each row records the 1-minute load average before and after it. On CPU,
glibc malloc is tuned for all variants (CPU_MALLOC_ENV; `--plain-malloc` turns that off).

    python benchmarks/moe.py                      # CPU: tiny and small, fp32
    python benchmarks/moe.py --device cuda        # GPU: small and the real layer shapes (7 layers), bf16
Results go to benchmarks/results/moe.json, one section per device (other sections are kept).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlvr.model.megrez2 import MLP, Megrez2Config, Megrez2ForCausalLM, RoutedExperts, parameter_counts
from rlvr.threads import CPU_MALLOC_ENV

RESULTS = Path(__file__).resolve().parent / "results" / "moe.json"
H100_DATASHEET_BF16 = 989.4e12  # H100 SXM dense bf16 tensor-core peak
# glibc hands allocations above its mmap threshold straight back to the kernel on free, so every bank-sized
# tensor (a shared bank's gradient: 226 MB at `small`) is page-faulted in again each step: 40% of the MoE
# layer's time at 64 tokens. rlvr.threads.CPU_MALLOC_ENV keeps freed memory in the heap; both variants run
# with it.


@dataclasses.dataclass
class Spec:
    """One measurement: a config at a batch shape, one variant, on one device."""

    config: str  # preset name, or "megrez2-7L" (the real layer shapes, 1 dense + 2 groups of 3 MoE layers)
    variant: str  # "optimised" | "hf_loop" | "paired" (both, alternating: the speed ratio)
    device: str
    batch: int
    seq: int
    param_dtype: str = "float32"
    amp: bool = False  # bf16 autocast over fp32 parameters
    compile: bool = False
    steps: int = 5
    warmup: int = 2
    threads: int = 0  # CPU intra-op threads; 0 = torch's default


def build_config(name: str) -> Megrez2Config:
    if name == "megrez2-7L":
        return Megrez2Config.preset("megrez2-3x7b-a3b", num_hidden_layers=7)
    return Megrez2Config.preset(name)


# ---- the HF remote-code expert loop


class HFLoopExperts(nn.Module):
    """Drop-in for RoutedExperts that runs the loop HF remote code uses in training (DeepSeek-V2 lineage)."""

    def __init__(self, bank: RoutedExperts):
        super().__init__()
        E, two_F, D = bank.w_gate_up_E2FD.shape
        F_ = two_F // 2
        self.experts = nn.ModuleList(MLP(D, F_) for _ in range(E))
        with torch.no_grad():
            for j, mlp in enumerate(self.experts):
                mlp.to(bank.w_gate_up_E2FD.device, bank.w_gate_up_E2FD.dtype)
                mlp.gate_proj.weight.copy_(bank.w_gate_up_E2FD[j, :F_])
                mlp.up_proj.weight.copy_(bank.w_gate_up_E2FD[j, F_:])
                mlp.down_proj.weight.copy_(bank.w_down_EDF[j])

    def forward(self, x_TD: Tensor, weights_TK: Tensor, indices_TK: Tensor) -> Tensor:
        T, K = indices_TK.shape
        x_SD = x_TD.repeat_interleave(K, dim=0)
        flat_S = indices_TK.reshape(-1)
        y_SD = torch.empty_like(x_SD)
        for e, expert in enumerate(self.experts):
            mask = flat_S == e
            y_SD[mask] = expert(x_SD[mask]).to(y_SD.dtype)
        return (y_SD.view(T, K, -1) * weights_TK.unsqueeze(-1).to(y_SD.dtype)).sum(dim=1)


def use_hf_loop(model: Megrez2ForCausalLM) -> None:
    """Swap every group's bank for one HFLoopExperts (shared by the group, like the bank)."""
    config, swapped = model.config, {}
    for i in config.moe_layer_ids:
        leader = config.group_leader(i)
        if leader not in swapped:
            swapped[leader] = HFLoopExperts(model.model.layers[leader].mlp.experts)
        model.model.layers[i].mlp.experts = swapped[leader]


def swap_in_hf_loop_checked(model: Megrez2ForCausalLM, ids: Tensor, amp: torch.autocast) -> float:
    """Swap in the HF loop and return its relative logit error against the optimised module on `ids`.

    The loop replays the optimised forward's expert choice: with random weights the router scores are near
    ties, so rounding differences alone would flip some top-k picks and the two runs would not be comparable.
    """
    with torch.no_grad(), amp:
        ref = model(ids)
        use_hf_loop(model)
        loop = model(ids, replay_indices=ref.expert_indices)
    err = ((loop.logits.float() - ref.logits.float()).norm() / ref.logits.float().norm()).item()
    tol = 1e-5 if ref.logits.dtype == torch.float32 else 3e-2
    if err > tol:
        raise AssertionError(f"hf_loop logits differ from the optimised module: relative error {err:.2e}")
    return err


# ---- one measurement (runs in its own process)


def train_flops_per_token(config: Megrez2Config, seq: int) -> float:
    D, hd, L = config.hidden_size, config.head_dim, config.num_hidden_layers
    H, Hkv = config.num_attention_heads, config.num_key_value_heads
    n_dense = config.first_k_dense_replace
    attn_proj = D * hd * (2 * H + 2 * Hkv)
    dense = 3 * D * config.intermediate_size
    k_active = config.num_experts_per_tok + config.n_shared_experts
    moe = 3 * D * config.moe_intermediate_size * k_active + D * config.n_routed_experts
    matmul_params = L * attn_proj + n_dense * dense + (L - n_dense) * moe + D * config.vocab_size
    attention = L * H * hd * 4 * (seq + 1) / 2  # QK^T and PV, causal: (T+1)/2 keys per query on average
    return 6 * matmul_params + 3 * attention


def build_model(spec: Spec) -> tuple[Megrez2ForCausalLM, Tensor, torch.autocast]:
    torch.manual_seed(0)
    device = torch.device(spec.device)
    config = build_config(spec.config)
    with device:
        model = Megrez2ForCausalLM(config).to(getattr(torch, spec.param_dtype))
    ids = torch.randint(0, config.vocab_size, (spec.batch, spec.seq + 1), device=device)
    return model, ids, torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.amp)


def make_step(
    model: Megrez2ForCausalLM, ids: Tensor, amp: torch.autocast, compile: bool
) -> Callable[[], float]:
    """One training step (forward, next-token loss, backward); returns its wall time in seconds."""
    forward = torch.compile(model) if compile else model

    def step() -> float:
        cuda = ids.is_cuda
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        with amp:
            logits = forward(ids[:, :-1]).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        model.zero_grad(set_to_none=True)
        if not cuda:
            return time.perf_counter() - t0
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3

    return step


def measure(spec: Spec) -> dict:
    """Tokens/s and peak memory of one variant (its own process, so the memory is its own)."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    model, ids, amp = build_model(spec)
    check_err = swap_in_hf_loop_checked(model, ids[:1, :-1], amp) if spec.variant == "hf_loop" else None
    step = make_step(model, ids, amp, spec.compile)
    for _ in range(spec.warmup):
        step()
    times = [step() for _ in range(spec.steps)]
    tokens = spec.batch * spec.seq
    if ids.is_cuda:
        peak_gb = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux
    return {
        **dataclasses.asdict(spec),
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens,
        "step_s_median": statistics.median(times),
        "step_s_min": min(times),
        "tokens_per_s": tokens / statistics.median(times),
        "peak_memory_gb": peak_gb,
        "rel_logit_err_vs_optimised": check_err,
        "flops_per_token": train_flops_per_token(model.config, spec.seq),
        **{f"params_{k}": v for k, v in parameter_counts(model.config).items()},
    }


def measure_paired(spec: Spec) -> dict:
    """The speed ratio: both variants in one process, alternating step by step, so that both see the same
    machine load (separate processes minutes apart do not, on a shared machine)."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    model, ids, amp = build_model(spec)
    load_before = os.getloadavg()[0]
    loop_model = copy.deepcopy(model)
    check_err = swap_in_hf_loop_checked(loop_model, ids[:1, :-1], amp)
    steps = {
        "optimised": make_step(model, ids, amp, False),
        "hf_loop": make_step(loop_model, ids, amp, False),
    }
    if spec.device == "cpu":  # the kernel the fused one replaced as CPU default
        grouped_model = copy.deepcopy(model)
        set_kernel(grouped_model, "grouped_mm")
        steps["grouped_mm"] = make_step(grouped_model, ids, amp, False)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(spec.warmup + spec.steps):
        for name, step in steps.items():
            seconds = step()
            if i >= spec.warmup:
                times[name].append(seconds)
    row = {**dataclasses.asdict(spec), "rel_logit_err_vs_optimised": check_err}
    for name, ts in times.items():
        row[f"{name}_step_s_median"], row[f"{name}_step_s_min"] = statistics.median(ts), min(ts)
    row["ratio_median"] = row["hf_loop_step_s_median"] / row["optimised_step_s_median"]
    row["ratio_best"] = row["hf_loop_step_s_min"] / row["optimised_step_s_min"]
    if "grouped_mm" in times:
        row["grouped_mm_ratio_median"] = row["hf_loop_step_s_median"] / row["grouped_mm_step_s_median"]
    row["loadavg_1min"] = [load_before, os.getloadavg()[0]]
    return row


def set_kernel(model: Megrez2ForCausalLM, kernel: str) -> None:
    for i in model.config.moe_layer_ids:
        model.model.layers[i].mlp.experts.kernel = kernel


@dataclasses.dataclass
class LayerSpec:
    """One routed-expert bank alone (dispatch, experts, combine; forward + backward), all variants."""

    config: str
    device: str
    tokens: int
    param_dtype: str = "float32"
    rounds: int = 9
    threads: int = 0  # CPU intra-op threads; 0 = torch's default. 1: no thread ever waits for another


def layer_variants(spec: LayerSpec) -> dict[str, nn.Module]:
    """The bank (random weights, seed 0), the HF loop over the same weights and, on CPU, the bank on the
    grouped_mm kernel."""
    torch.manual_seed(0)
    config, device = build_config(spec.config), torch.device(spec.device)
    bank = RoutedExperts(config.n_routed_experts, config.hidden_size, config.moe_intermediate_size)
    bank.to(device, getattr(torch, spec.param_dtype))
    nn.init.normal_(bank.w_gate_up_E2FD, std=0.02)
    nn.init.normal_(bank.w_down_EDF, std=0.02)
    variants: dict[str, nn.Module] = {"optimised": bank, "hf_loop": HFLoopExperts(bank)}
    if device.type == "cpu":
        variants["grouped_mm"] = copy.deepcopy(bank)
        variants["grouped_mm"].kernel = "grouped_mm"
    return variants


def measure_layer(spec: LayerSpec) -> dict:
    """The variants alternate step by step in one process, so that all see the same machine load."""
    load_before = os.getloadavg()[0]
    if spec.threads:
        torch.set_num_threads(spec.threads)
    variants = layer_variants(spec)
    config, device = build_config(spec.config), torch.device(spec.device)
    E, K = config.n_routed_experts, config.num_experts_per_tok
    x = torch.randn(spec.tokens, config.hidden_size, device=device, dtype=getattr(torch, spec.param_dtype))
    x.requires_grad_()
    weights, indices = torch.rand(spec.tokens, E, device=device).topk(K, dim=-1)
    weights.requires_grad_()  # as the router's are

    def step(module: nn.Module) -> float:
        t0 = time.perf_counter()
        module(x, weights, indices).float().square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        module.zero_grad(set_to_none=True)
        x.grad = weights.grad = None
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(2 + spec.rounds):  # 2 warm-up rounds
        for name, module in variants.items():
            seconds = step(module)
            if i >= 2:
                times[name].append(seconds)
    row = {**dataclasses.asdict(spec), "threads": torch.get_num_threads(), "slots": spec.tokens * K}
    for name, ts in times.items():
        row[f"{name}_ms_median"], row[f"{name}_ms_min"] = 1e3 * statistics.median(ts), 1e3 * min(ts)
    row["ratio_median"] = row["hf_loop_ms_median"] / row["optimised_ms_median"]
    row["ratio_best"] = row["hf_loop_ms_min"] / row["optimised_ms_min"]
    if "grouped_mm" in times:
        row["grouped_mm_ratio_median"] = row["hf_loop_ms_median"] / row["grouped_mm_ms_median"]
    row["loadavg_1min"] = [load_before, os.getloadavg()[0]]
    return row


def measured_bf16_peak() -> float:
    """Median bf16 8192^3 matmul rate on this GPU (random data, 3 rotating inputs, events)."""
    n = 8192
    a = [torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for x in a:
        x @ b
    times = []
    for i in range(30):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a[i % 3] @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * n**3 / statistics.median(times)


def run_in_subprocess(spec: Spec | LayerSpec, env: dict[str, str]) -> dict:
    flag = "--one-layer" if isinstance(spec, LayerSpec) else "--one"
    cmd = [sys.executable, __file__, flag, json.dumps(dataclasses.asdict(spec))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {**dataclasses.asdict(spec), "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- plans


def cpu_plan(steps: int) -> list[Spec]:
    shapes = {"tiny": (16, 256), "small": (4, 256)}
    return [
        Spec(name, variant, "cpu", *shapes[name], steps=steps)
        for name in ("tiny", "small")
        for variant in ("optimised", "hf_loop", "paired")
    ]


def layer_plan(device: str) -> list[LayerSpec]:
    if device == "cpu":  # 64 tokens: few per expert, as in decoding; 1024: the training step's batch
        return [LayerSpec("small", "cpu", tokens) for tokens in (64, 1024)] + [
            LayerSpec("small", "cpu", 1024, threads=1)  # the work alone: no thread waits for another
        ]
    return [
        LayerSpec(name, "cuda", tokens, param_dtype="bfloat16")
        for name in ("small", "megrez2-7L")
        for tokens in (512, 16384)
    ]


def cuda_plan(steps: int) -> list[Spec]:
    bf16 = {"device": "cuda", "param_dtype": "bfloat16", "steps": steps, "warmup": 3}
    return [
        Spec("small", "optimised", batch=16, seq=2048, **bf16),
        Spec("small", "optimised", batch=16, seq=2048, compile=True, **bf16),
        Spec("small", "hf_loop", batch=16, seq=2048, **bf16),
        Spec("small", "paired", batch=16, seq=2048, **bf16),
        Spec("megrez2-7L", "optimised", batch=8, seq=2048, **bf16),
        Spec("megrez2-7L", "optimised", batch=8, seq=2048, compile=True, **bf16),
        Spec(
            "megrez2-7L",
            "optimised",
            batch=8,
            seq=2048,
            amp=True,
            compile=True,
            **{**bf16, "param_dtype": "float32"},
        ),
    ]


def summarise(rows: list[dict], peaks: dict[str, float]) -> dict:
    """Adds MFU to the timed rows; returns the optimised / hf_loop speed ratio per config (paired rows)."""
    for row in rows:
        if "error" not in row and row["variant"] != "paired":
            for name, peak in peaks.items():
                row[f"mfu_{name}"] = row["tokens_per_s"] * row["flops_per_token"] / peak
    ratios = {}
    for r in rows:
        if r["variant"] == "paired" and "error" not in r:
            ratios[r["config"]] = {"median_step": r["ratio_median"], "best_step": r["ratio_best"]}
            if "grouped_mm_ratio_median" in r:
                ratios[r["config"]]["grouped_mm_median_step"] = r["grouped_mm_ratio_median"]
    return ratios


def print_table(rows: list[dict], ratios: dict) -> None:
    print(f"{'config':<11} {'variant':<10} {'dtype':<9} {'compile':<7} {'B x T':<10} {'tokens/s':>10} "
          f"{'step ms':>9} {'peak GB':>8} {'MFU(989)':>9} {'MFU(meas)':>9}")  # fmt: skip
    for r in rows:
        if "error" in r:
            print(f"{r['config']:<11} {r['variant']:<10} ERROR {r['error']}")
            continue
        if r["variant"] == "paired":
            continue
        dtype = "amp-bf16" if r["amp"] else r["param_dtype"].replace("float", "fp").replace("bfloat", "bf")
        mfu = [f"{100 * r[k]:8.1f}%" if k in r else f"{'-':>9}" for k in ("mfu_datasheet", "mfu_measured")]
        print(f"{r['config']:<11} {r['variant']:<10} {dtype:<9} {r['compile']!s:<7} "
              f"{r['batch']}x{r['seq']:<7} {r['tokens_per_s']:>10.0f} {1e3 * r['step_s_median']:>9.1f} "
              f"{r['peak_memory_gb']:>8.2f} {mfu[0]} {mfu[1]}")  # fmt: skip
    print("\nspeed ratio, the variants alternating in one process:")
    for name, ratio in ratios.items():
        grouped = ratio.get("grouped_mm_median_step")
        print(f"{name}: optimised / hf_loop = {ratio['median_step']:.2f}x (median step), "
              f"{ratio['best_step']:.2f}x (best step)"
              + (f"; grouped_mm / hf_loop = {grouped:.2f}x (median step)" if grouped else ""))  # fmt: skip


def print_layer_table(rows: list[dict]) -> None:
    print("\none routed-expert bank, forward + backward (dispatch, experts, combine):")
    print(f"{'config':<11} {'tokens':>6} {'threads':>7} {'optimised ms':>13} {'hf_loop ms':>11} {'ratio':>6} "
          f"{'best':>6} {'grouped_mm ms':>14} {'ratio':>6} {'load':>9}")  # fmt: skip
    for r in rows:
        ms = f"{r['optimised_ms_median']:>13.1f} {r['hf_loop_ms_median']:>11.1f}"
        grouped = (f"{r['grouped_mm_ms_median']:>14.1f} {r['grouped_mm_ratio_median']:>5.2f}x"
                   if "grouped_mm_ms_median" in r else f"{'-':>14} {'-':>6}")  # fmt: skip
        load = "{:.1f}-{:.1f}".format(*r["loadavg_1min"])
        print(f"{r['config']:<11} {r['tokens']:>6} {r['threads']:>7} {ms} {r['ratio_median']:>5.2f}x "
              f"{r['ratio_best']:>5.2f}x {grouped} {load:>9}")  # fmt: skip


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (median reported)")
    parser.add_argument("--only", default="", help="comma-separated config names to keep from the plan")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--plain-malloc", action="store_true", help="CPU: leave glibc malloc untuned")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement as JSON
    parser.add_argument("--one-layer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        spec = Spec(**json.loads(args.one))
        print(json.dumps(measure_paired(spec) if spec.variant == "paired" else measure(spec)))
        return
    if args.one_layer:
        print(json.dumps(measure_layer(LayerSpec(**json.loads(args.one_layer)))))
        return

    plan = cpu_plan(args.steps) if args.device == "cpu" else cuda_plan(args.steps)
    if args.only:
        plan = [s for s in plan if s.config in args.only.split(",")]
    machine = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_cores": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
    }
    env = {} if args.device == "cuda" or args.plain_malloc else CPU_MALLOC_ENV
    machine["malloc_env"] = env
    peaks = {}
    if args.device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name()
        peaks = {"datasheet": H100_DATASHEET_BF16, "measured": measured_bf16_peak()}
        machine["bf16_peak_flops"] = peaks
    rows = []
    for spec in plan:
        rows.append(run_in_subprocess(spec, env))
        print(json.dumps(rows[-1]), flush=True)
    ratios = summarise(rows, peaks)
    layers = [run_in_subprocess(spec, env) for spec in layer_plan(args.device)]
    layers = [row for row in layers if "error" not in row and (not args.only or row["config"] in args.only)]
    print_table(rows, ratios)
    print_layer_table(layers)

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.device] = {
        "machine": machine,
        "optimised_over_hf_loop": ratios,
        "runs": rows,
        "expert_layer_only": layers,
    }
    if "runs" not in results.get("cuda", {}):
        results["cuda"] = {
            "measured": False,
            "note": "GPU numbers (bf16 tokens/s, MFU) were not measured: no GPU was available for this run. "
            "Run `python benchmarks/moe.py --device cuda` on one.",
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
