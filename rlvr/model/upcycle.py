"""Sparse upcycling (Komatsuzaki et al. 2022, "Sparse Upcycling: Training Mixture-of-Experts from Dense
Checkpoints"): a dense Llama-family model rewritten as a Megrez2 MoE that computes exactly the same function.

The mapping, layer by layer:
* attention, norms, embeddings and the LM head are copied; RoPE theta, RMSNorm eps, GQA, head_dim and tied
  embeddings carry over;
* layers < `first_k_dense_replace` keep their MLP as Megrez2's dense FFN;
* every later layer keeps its own MLP as its **shared expert**. Megrez2 fuses its shared experts into one
  SwiGLU of width `n_shared_experts * moe_intermediate_size`, so `n_shared_experts` is chosen as
  `intermediate_size / moe_intermediate_size` (the expert width must divide the dense width): the fused
  shared expert *is* the dense MLP, with no new config field;
* each group of `experts_shared_frequency` MoE layers gets one routed bank whose down projections start at
  zero, so the routed experts add exactly 0 at import. Their gate/up projections start as slices of the
  group's dense MLP neurons (expert j: layer j mod group, neuron block j // group), so the features they
  start from are the dense model's, as in upcycling; the routers start small and random (normal(0, std)),
  correction bias 0; pre-gating on. RL then learns the routing and the experts' down projections.

Everything here is pure tensor work on state dicts with the source's Hugging Face names; reading sources
and writing checkpoints is `rlvr.model.importer`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlvr.model.import_options import ModelImportError, UpcycleOptions
from rlvr.model.megrez2 import Megrez2Config

__all__ = [
    "ModelImportError",
    "UpcycleOptions",
    "check_source_config",
    "megrez2_config",
    "resolve_first_dense",
    "upcycled_state",
]

# model_type -> the architecture name transformers gives it; both are Llama decoders with SwiGLU MLPs.
SUPPORTED_MODEL_TYPES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}

# Source config keys the Megrez2 module does not model, with the only value it can carry over. Anything
# else is refused by name rather than silently dropped.
NEUTRAL_VALUES: dict[str, Any] = {
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "rope_scaling": None,
    "sliding_window": None,
    "use_sliding_window": False,
    "attention_dropout": 0.0,
}


# ---- config


def check_source_config(source: dict[str, Any]) -> None:
    """Refuses a source config the Megrez2 module cannot reproduce exactly.

    Raises ModelImportError naming the architecture found (anything but a Llama-family decoder) or every
    unmodelled feature with its value (rope scaling, attention/MLP bias, sliding window, ...)."""
    model_type = source.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        found = ", ".join(source.get("architectures") or []) or "no architectures"
        raise ModelImportError(
            f"cannot map architecture {found} (model_type {model_type!r}) to Megrez2; supported: "
            + ", ".join(f"{v} ({k})" for k, v in SUPPORTED_MODEL_TYPES.items())
        )
    problems = [
        f"{key}={source[key]!r} (Megrez2 models only {neutral!r})"
        for key, neutral in NEUTRAL_VALUES.items()
        if key in source and source[key] != neutral
    ]
    rope = source.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default" or set(rope) - {"rope_type", "rope_theta"}:
        problems.append(f"rope_parameters={rope!r} (Megrez2 models only plain RoPE with a rope_theta)")
    if any(kind != "full_attention" for kind in source.get("layer_types") or []):
        problems.append("layer_types other than full_attention (sliding-window layers)")
    if problems:
        raise ModelImportError(
            f"{model_type} config has features Megrez2 does not model:\n  " + "\n  ".join(problems)
        )


def fitting_dense_counts(num_layers: int, group: int) -> list[int]:
    """The first_k_dense_replace values that leave a whole number of groups of `group` MoE layers; the last,
    `num_layers`, leaves none: the model imported dense (the same FLOPs as the source)."""
    return [k for k in range(num_layers + 1) if (num_layers - k) % group == 0]


def resolve_first_dense(num_layers: int, group: int, requested: int | None) -> int:
    """`requested`, or the smallest k >= 1 that fits. Raises ModelImportError when the MoE layers would not
    form whole groups: rlvr's modules would run a short last group, but Megrez2's layout is whole groups of
    `experts_shared_frequency` and other Megrez2 readers hard-code that."""
    fits = fitting_dense_counts(num_layers, group)
    if requested is None:
        positive = [k for k in fits if 1 <= k < num_layers]
        if not positive:
            raise ModelImportError(f"{num_layers} layers leave no MoE layers in groups of {group}")
        return positive[0]
    if requested not in fits:
        raise ModelImportError(
            f"first_k_dense_replace={requested} leaves {num_layers - requested} MoE layers, not a whole "
            f"number of groups of {group} (experts_shared_frequency); with {num_layers} layers use one of "
            f"{', '.join(map(str, fits))}"
        )
    return requested


def megrez2_config(source: dict[str, Any], options: UpcycleOptions) -> Megrez2Config:
    """The Megrez2 config of an upcycled source config (a transformers `config.to_dict()`).

    Raises ModelImportError for an unmappable source (see `check_source_config`), a layer count that does
    not fit the groups, or an expert width that does not divide the dense MLP width."""
    check_source_config(source)
    layers, dense_width = source["num_hidden_layers"], source["intermediate_size"]
    F = options.moe_intermediate_size
    if F <= 0 or dense_width % F:
        divisors = [d for d in range(1, dense_width + 1) if dense_width % d == 0 and d >= 16]
        raise ModelImportError(
            f"moe_intermediate_size={F} must divide the dense MLP width {dense_width} (the shared expert is "
            f"the dense MLP, n_shared_experts x moe_intermediate_size wide); e.g. {divisors[:12]}"
        )
    heads = source["num_attention_heads"]
    rope = source.get("rope_parameters") or {}
    token_ids = ("bos_token_id", "eos_token_id", "pad_token_id")
    ids = {k: source[k] for k in token_ids if source.get(k) is not None}
    try:
        return Megrez2Config(
            vocab_size=source["vocab_size"],
            hidden_size=source["hidden_size"],
            num_hidden_layers=layers,
            rms_norm_eps=source["rms_norm_eps"],
            tie_word_embeddings=bool(source.get("tie_word_embeddings", False)),
            num_attention_heads=heads,
            num_key_value_heads=source.get("num_key_value_heads") or heads,
            head_dim=source.get("head_dim") or source["hidden_size"] // heads,
            rope_theta=float(rope.get("rope_theta", source.get("rope_theta", 10000.0))),
            max_position_embeddings=source["max_position_embeddings"],
            intermediate_size=dense_width,
            first_k_dense_replace=resolve_first_dense(
                layers, options.experts_shared_frequency, options.first_k_dense_replace
            ),
            moe_intermediate_size=F,
            n_routed_experts=options.n_routed_experts,
            num_experts_per_tok=options.num_experts_per_tok,
            n_shared_experts=dense_width // F,
            experts_shared_frequency=options.experts_shared_frequency,
            pre_gate=True,
            torch_dtype="float32",
            extra=ids,
        )
    except ValueError as exc:  # Megrez2Config's own validation (top-k > experts, GQA ratio, ...)
        if isinstance(exc, ModelImportError):
            raise
        raise ModelImportError(str(exc)) from exc


# ---- weights


def upcycled_state(
    source: dict[str, Tensor], config: Megrez2Config, options: UpcycleOptions
) -> dict[str, Tensor]:
    """The native Megrez2 state dict (names of `Megrez2ForCausalLM.state_dict()`) of a dense source state
    dict with Hugging Face Llama names, in fp32. Raises ModelImportError for a missing source tensor."""
    src = _Reader(source)
    state: dict[str, Tensor] = {
        "model.embed_tokens.weight": src("model.embed_tokens.weight"),
        "model.norm.weight": src("model.norm.weight"),
    }
    tied = config.tie_word_embeddings or "lm_head.weight" not in source
    state["lm_head.weight"] = state["model.embed_tokens.weight"] if tied else src("lm_head.weight")
    generator = torch.Generator().manual_seed(options.seed)
    for i in range(config.num_hidden_layers):
        prefix = f"model.layers.{i}."
        for name in ("input_layernorm", "post_attention_layernorm"):
            state[f"{prefix}{name}.weight"] = src(f"{prefix}{name}.weight")
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            state[f"{prefix}self_attn.{proj}.weight"] = src(f"{prefix}self_attn.{proj}.weight")
        mlp = {p: src(f"{prefix}mlp.{p}.weight") for p in ("gate_proj", "up_proj", "down_proj")}
        if not config.is_moe_layer(i):
            state.update({f"{prefix}mlp.{p}.weight": w for p, w in mlp.items()})
            continue
        state.update({f"{prefix}mlp.shared_experts.{p}.weight": w for p, w in mlp.items()})
        E, D = config.n_routed_experts, config.hidden_size
        router = torch.randn(E, D, generator=generator) * options.router_std
        state[f"{prefix}mlp.gate.weight"] = router
        state[f"{prefix}mlp.gate.e_score_correction_bias"] = torch.zeros(E)
        if config.group_leader(i) == i:
            w_gate_up, w_down = routed_bank(src, config, i)
            state[f"{prefix}mlp.experts.w_gate_up_E2FD"] = w_gate_up
            state[f"{prefix}mlp.experts.w_down_EDF"] = w_down
    return state


def routed_bank(src: _Reader, config: Megrez2Config, leader: int) -> tuple[Tensor, Tensor]:
    """(w_gate_up (E, 2F, D), w_down (E, D, F)) of the bank of the group led by `leader`: expert j's gate and
    up rows are neuron block j // group of layer leader + j % group's dense MLP (cycling when there are more
    experts than blocks); every down projection is zero, so the bank adds nothing until RL trains it."""
    E, F, D = config.n_routed_experts, config.moe_intermediate_size, config.hidden_size
    group = [
        i
        for i in range(leader, min(leader + config.experts_shared_frequency, config.num_hidden_layers))
        if config.group_leader(i) == leader
    ]
    blocks = config.intermediate_size // F
    w_gate_up = torch.empty(E, 2 * F, D)
    for j in range(E):
        layer = group[j % len(group)]
        rows = slice((j // len(group)) % blocks * F, ((j // len(group)) % blocks + 1) * F)
        w_gate_up[j, :F] = src(f"model.layers.{layer}.mlp.gate_proj.weight")[rows]
        w_gate_up[j, F:] = src(f"model.layers.{layer}.mlp.up_proj.weight")[rows]
    return w_gate_up, torch.zeros(E, D, F)


class _Reader:
    """Source tensors by name, as fp32 CPU tensors; a missing name is a ModelImportError."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        self.state = state

    def __call__(self, name: str) -> Tensor:
        if name not in self.state:
            raise ModelImportError(f"source has no tensor {name!r} (is it a Llama-family checkpoint?)")
        return self.state[name].detach().to("cpu", torch.float32)
