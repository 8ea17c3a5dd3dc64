"""Megrez2's hyper-parameters (`config.json`) and the built-in presets (`model.preset` in a recipe)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# rlvr switches that live in the config object but are not model facts, so config.json does not get them.
RUNTIME_FIELDS = ("activation_checkpointing", "router_bias_update_rate")


@dataclass
class Megrez2Config:
    """Megrez2 hyper-parameters under their HF `config.json` names (a DeepSeek-V2/V3 config plus
    `pre_gate` and `experts_shared_frequency`). Defaults are Megrez2-3x7B-A3B as far as the public sources pin
    it down; the values they leave open (kv heads, rope_theta, rms_norm_eps, routed_scaling_factor, grouping)
    are always read from the checkpoint's config.json when there is one."""

    # -- trunk
    vocab_size: int = 128880
    hidden_size: int = 2048
    num_hidden_layers: int = 31
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    # -- attention: Llama GQA
    num_attention_heads: int = 16
    num_key_value_heads: int = 4
    head_dim: int = 128
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 163840
    # -- dense SwiGLU in layers < first_k_dense_replace
    intermediate_size: int = 10944
    first_k_dense_replace: int = 1
    # -- MoE
    moe_intermediate_size: int = 1408
    n_routed_experts: int = 64
    num_experts_per_tok: int = 6
    n_shared_experts: int = 4
    moe_layer_freq: int = 1
    experts_shared_frequency: int = 3
    pre_gate: bool = True
    scoring_func: str = "sigmoid"
    topk_method: str = "noaux_tc"
    norm_topk_prob: bool = True
    routed_scaling_factor: float = 1.0
    n_group: int = 1
    topk_group: int = 1
    hidden_act: str = "silu"
    attention_bias: bool = False
    # -- identity
    architectures: list[str] = field(default_factory=lambda: ["MegrezMoeForCausalLM"])
    model_type: str = "megrez_moe"
    torch_dtype: str | None = None
    # -- rlvr switches (RUNTIME_FIELDS)
    activation_checkpointing: bool = False  # recompute each layer in backward
    # aux-loss-free balancing step of the correction bias; 0 = off (RL keeps the routing the rollouts saw)
    router_bias_update_rate: float = 0.0
    # -- keys of a real config.json this class does not model (aux-loss fields, token ids, ...): kept
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append("num_attention_heads must be a multiple of num_key_value_heads")
        if (self.scoring_func, self.topk_method) != ("sigmoid", "noaux_tc"):
            problems.append("only scoring_func='sigmoid' with topk_method='noaux_tc' is implemented")
        if self.hidden_act != "silu" or self.attention_bias:
            problems.append("only hidden_act='silu' without attention_bias is implemented")
        if self.moe_layer_freq != 1:
            problems.append("only moe_layer_freq=1 is implemented (every layer after the dense ones is MoE)")
        if self.n_routed_experts % self.n_group or not 0 < self.topk_group <= self.n_group:
            problems.append("n_group must divide n_routed_experts and 0 < topk_group <= n_group")
        if self.num_experts_per_tok > self.topk_group * self.n_routed_experts // self.n_group:
            problems.append("num_experts_per_tok exceeds the experts left after group selection")
        if self.extra.get("rope_scaling") is not None:
            problems.append("rope_scaling is not implemented (Megrez2 has none)")
        if problems:
            raise ValueError("unsupported Megrez2 config:\n  " + "\n  ".join(problems))

    # -- layer structure
    def is_moe_layer(self, layer_id: int) -> bool:
        return layer_id >= self.first_k_dense_replace

    def group_leader(self, layer_id: int) -> int:
        """The layer whose expert bank `layer_id` uses: {1,2,3} -> 1, {4,5,6} -> 4 with one dense layer."""
        k, freq = self.first_k_dense_replace, self.experts_shared_frequency
        return k + (layer_id - k) // freq * freq

    @property
    def moe_layer_ids(self) -> list[int]:
        return [i for i in range(self.num_hidden_layers) if self.is_moe_layer(i)]

    # -- config.json
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Megrez2Config:
        d = dict(d)
        if d.get("num_key_value_heads") is None:  # HF convention: absent means multi-head attention
            d["num_key_value_heads"] = d.get("num_attention_heads", cls.num_attention_heads)
        if d.get("head_dim") is None:
            d["head_dim"] = d.get("hidden_size", cls.hidden_size) // d.get(
                "num_attention_heads", cls.num_attention_heads
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        d = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "extra" and f.name not in RUNTIME_FIELDS
        }
        return {**d, "architectures": list(self.architectures), **self.extra}

    @classmethod
    def from_json(cls, path: str | Path) -> Megrez2Config:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Megrez2Config:
        if name not in PRESETS:
            raise KeyError(f"unknown Megrez2 preset {name!r}; known: {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[name](), **overrides)


PRESETS: dict[str, Callable[[], Megrez2Config]] = {
    # The released model (7.50B stored, 3.0B activated without embeddings).
    "megrez2-3x7b-a3b": Megrez2Config,
    # Benchmarks: 191M stored, 61M activated without embeddings; 64 experts, top-6, groups of 3 as the real
    # one.
    "small": lambda: Megrez2Config(
        vocab_size=32000,
        hidden_size=768,
        num_hidden_layers=7,
        num_attention_heads=12,
        num_key_value_heads=4,
        head_dim=64,
        intermediate_size=3072,
        moe_intermediate_size=384,
        n_shared_experts=2,
        rope_theta=10000.0,
        max_position_embeddings=4096,
    ),
    # CPU tests: 1 dense layer + 2 groups of 3 MoE layers, 8 experts top-2, 1 shared expert. head_dim 32: the
    # smallest vLLM's CPU attention takes.
    "tiny": lambda: Megrez2Config(
        vocab_size=256,
        hidden_size=64,
        num_hidden_layers=7,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        intermediate_size=128,
        moe_intermediate_size=32,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_shared_experts=1,
        rope_theta=10000.0,
        max_position_embeddings=512,
    ),
}


PRESET_NAMES = tuple(PRESETS)


def preset_config(name: str, **overrides: Any) -> Megrez2Config:
    """The config of a built-in preset (`model.preset` in a recipe), with field overrides."""
    return Megrez2Config.preset(name, **overrides)
