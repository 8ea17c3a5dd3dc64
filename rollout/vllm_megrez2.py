"""Megrez2 as a vLLM model: `MegrezMoeForCausalLM`, registered out of tree (see `rollout/vllm_plugin.py`).

vLLM supplies attention and the paged KV cache (GQA, NeoX RoPE), the tensor-parallel linears and the sampler;
the parts vLLM has no kernel for come from the native module, so both engines compute the same thing:

- routing is `rlvr.model.megrez2.route_tokens` (sigmoid scores, selection-only correction bias, renormalised
  un-biased weights, fp32), with **pre-gating**: layer i's router reads layer i-1's FFN input, which the layer
  loop carries from one layer to the next;
- each group of `experts_shared_frequency` layers holds **one** `RoutedExperts` bank (the same module object
  in every layer of the group, so its parameters exist once, named under the group's first layer exactly as
  the official checkpoint stores them), run by the native sort-by-expert dispatch. vLLM's fused MoE layer
  keeps one router bias per expert module, which cannot express three layers with their own bias over one
  bank.

Built with the config flag `CAPTURE_ROUTES` (vLLM's `hf_overrides`), the model also writes each token's
experts into static buffers every forward, which `rollout/routing_capture.py` files per request (R3).

Weights load through `load_weights`, which routes every checkpoint tensor through its parameter's
`weight_loader`: vLLM's in-place reload (`reload_weights`) depends on that to refill repacked CPU weights.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PretrainedConfig
from vllm.config import VllmConfig
from vllm.distributed import get_pp_group, get_tensor_model_parallel_world_size
from vllm.model_executor.layers.activation import SiluAndMul
from vllm.model_executor.layers.attention import Attention
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.linear import (
    MergedColumnParallelLinear,
    QKVParallelLinear,
    RowParallelLinear,
)
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.rotary_embedding import get_rope
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from vllm.model_executor.model_loader.weight_utils import default_weight_loader
from vllm.sequence import IntermediateTensors

from rlvr.model.megrez2 import Megrez2Config, RoutedExperts, layer_banks, route_tokens
from rlvr.model.tied import EMBEDDING, HEAD, check_tied_head
from rollout.vllm_cpu_moe import CpuFusedExperts, cpu_kernel_available
from rollout.vllm_plugin import CAPTURE_ROUTES, native_config

EXPERT_KERNELS = ("auto", "native")  # auto: vLLM-CPU's fused MoE kernel where it applies, else native


class MegrezMoeMLP(nn.Module):
    """SwiGLU: the dense FFN of layer 0, and the shared experts of a MoE layer (one fused MLP)."""

    def __init__(self, hidden_size: int, intermediate_size: int, prefix: str) -> None:
        super().__init__()
        self.gate_up_proj = MergedColumnParallelLinear(
            hidden_size, [intermediate_size] * 2, bias=False, prefix=f"{prefix}.gate_up_proj"
        )
        self.down_proj = RowParallelLinear(
            intermediate_size, hidden_size, bias=False, prefix=f"{prefix}.down_proj"
        )
        self.act_fn = SiluAndMul()

    def forward(self, x: Tensor) -> Tensor:
        gate_up, _ = self.gate_up_proj(x)
        out, _ = self.down_proj(self.act_fn(gate_up))
        return out


class MegrezMoeAttention(nn.Module):
    """Llama GQA with NeoX-style RoPE over the full head_dim, on vLLM's paged attention."""

    def __init__(self, config: PretrainedConfig, cache_config: Any, prefix: str) -> None:
        super().__init__()
        tp = get_tensor_model_parallel_world_size()
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads // tp
        self.num_kv_heads = max(1, config.num_key_value_heads // tp)
        self.q_size, self.kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.qkv_proj = QKVParallelLinear(
            config.hidden_size,
            self.head_dim,
            config.num_attention_heads,
            config.num_key_value_heads,
            bias=False,
            prefix=f"{prefix}.qkv_proj",
        )
        self.o_proj = RowParallelLinear(
            config.num_attention_heads * self.head_dim,
            config.hidden_size,
            bias=False,
            prefix=f"{prefix}.o_proj",
        )
        self.rotary_emb = get_rope(
            self.head_dim,
            max_position=config.max_position_embeddings,
            is_neox_style=True,
            rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        )
        self.attn = Attention(
            self.num_heads,
            self.head_dim,
            self.head_dim**-0.5,
            num_kv_heads=self.num_kv_heads,
            cache_config=cache_config,
            prefix=f"{prefix}.attn",
        )

    def forward(self, positions: Tensor, x: Tensor) -> Tensor:
        qkv, _ = self.qkv_proj(x)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q, k = self.rotary_emb(positions, q, k)
        out, _ = self.o_proj(self.attn(q, k, v))
        return out


class MegrezMoeGate(nn.Module):
    """Router of one MoE layer: its own weight and correction bias, kept in fp32 (near-ties between experts
    are common; bf16 would flip them, and the learner routes in fp32)."""

    def __init__(self, config: Megrez2Config) -> None:
        super().__init__()
        self.config = config
        E, D = config.n_routed_experts, config.hidden_size
        self.weight = nn.Parameter(torch.empty(E, D, dtype=torch.float32), requires_grad=False)
        self.e_score_correction_bias = nn.Parameter(torch.zeros(E, dtype=torch.float32), requires_grad=False)
        for param in (self.weight, self.e_score_correction_bias):
            param.weight_loader = default_weight_loader

    def forward(self, x_TD: Tensor) -> tuple[Tensor, Tensor]:
        c = self.config
        return route_tokens(
            x_TD,
            self.weight,
            self.e_score_correction_bias,
            c.num_experts_per_tok,
            c.n_group,
            c.topk_group,
            c.norm_topk_prob,
            c.routed_scaling_factor,
        )


def expert_weight_loader(
    param: nn.Parameter, loaded_weight: Tensor, expert_id: int | None = None, shard: str | None = None
) -> None:
    """Copies one expert's `gate_proj`/`up_proj`/`down_proj` matrix (official layout) into its slot of the
    stacked bank, or, with no expert id, the whole stacked bank (native layout, as the learner syncs it)."""
    if expert_id is None:
        target = param.data
    elif shard == "down_proj":
        target = param.data[expert_id]
    else:
        half = param.shape[1] // 2
        target = param.data[expert_id, :half] if shard == "gate_proj" else param.data[expert_id, half:]
    if target.shape != loaded_weight.shape:
        raise ValueError(
            f"expert bank {shard or ''}[{expert_id}]: checkpoint {tuple(loaded_weight.shape)}, "
            f"model {tuple(target.shape)}"
        )
    target.copy_(loaded_weight)


class MegrezMoeSparseBlock(nn.Module):
    """Routed experts (the group's bank) + the fused shared experts. The router input comes from outside: with
    pre-gating it is the previous layer's FFN input."""

    def __init__(
        self, config: Megrez2Config, bank: RoutedExperts, fused: CpuFusedExperts | None, prefix: str
    ) -> None:
        super().__init__()
        self.gate = MegrezMoeGate(config)
        self.shared_experts = MegrezMoeMLP(
            config.hidden_size,
            config.moe_intermediate_size * config.n_shared_experts,
            f"{prefix}.shared_experts",
        )
        self.experts = bank
        self.fused = fused  # the group's CPU kernel runner (a plain attribute: not a second copy of the bank)
        self.expert_kernel = "auto"

    def forward(self, x_TD: Tensor, router_input_TD: Tensor) -> tuple[Tensor, Tensor]:
        """(FFN output, the experts each token was routed to (T, K))."""
        weights_TK, indices_TK = self.gate(router_input_TD)
        if self.fused is not None and self.expert_kernel == "auto" and self.fused.accepts(x_TD):
            routed_TD = self.fused(x_TD, weights_TK, indices_TK)
        else:
            routed_TD = self.experts(x_TD, weights_TK, indices_TK).to(x_TD.dtype)
        return routed_TD + self.shared_experts(x_TD), indices_TK


class MegrezMoeDecoderLayer(nn.Module):
    def __init__(
        self,
        config: PretrainedConfig,
        native: Megrez2Config,
        bank: RoutedExperts | None,
        fused: CpuFusedExperts | None,
        cache_config: Any,
        prefix: str,
    ) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = MegrezMoeAttention(config, cache_config, f"{prefix}.self_attn")
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.is_moe = bank is not None
        if bank is None:
            self.mlp: nn.Module = MegrezMoeMLP(config.hidden_size, config.intermediate_size, f"{prefix}.mlp")
        else:
            self.mlp = MegrezMoeSparseBlock(native, bank, fused, f"{prefix}.mlp")

    def forward(
        self, positions: Tensor, h: Tensor, residual: Tensor | None, router_input: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Returns (FFN output, residual stream, this layer's FFN input for the next layer's router, the
        experts of each token (T, K) or None in a dense layer)."""
        if residual is None:
            residual, h = h, self.input_layernorm(h)
        else:
            h, residual = self.input_layernorm(h, residual)
        h = self.self_attn(positions, h)
        x, residual = self.post_attention_layernorm(h, residual)
        if not self.is_moe:
            return self.mlp(x), residual, x, None
        out, indices_TK = self.mlp(x, x if router_input is None else router_input)
        return out, residual, x, indices_TK


class MegrezMoeModel(nn.Module):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        native = native_config(config)
        self.pre_gate = native.pre_gate
        self.embed_tokens = VocabParallelEmbedding(
            config.vocab_size, config.hidden_size, prefix=f"{prefix}.embed_tokens"
        )
        banks = layer_banks(native)
        self.fused: dict[int, CpuFusedExperts] = {}  # id(bank) -> its CPU kernel runner
        on_cpu = cpu_kernel_available()
        for bank in {id(b): b for b in banks if b is not None}.values():
            bank.w_gate_up_E2FD.weight_loader = expert_weight_loader
            bank.w_down_EDF.weight_loader = expert_weight_loader
            bank.requires_grad_(False)
            if on_cpu and CpuFusedExperts.fits(bank):
                self.fused[id(bank)] = CpuFusedExperts(bank)
        layers = [
            MegrezMoeDecoderLayer(
                config,
                native,
                bank,
                None if bank is None else self.fused.get(id(bank)),
                vllm_config.cache_config,
                f"{prefix}.layers.{i}",
            )
            for i, bank in enumerate(banks)
        ]
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        # Routing capture (R3, `rollout/routing_capture.py`): the step's experts (token, MoE layer, k) and
        # positions in the batch's token order. Static buffers written inside the forward, so they work under
        # CUDA graphs too; the worker reads them after each step.
        capture = bool(getattr(config, CAPTURE_ROUTES, False))
        tokens = vllm_config.scheduler_config.max_num_batched_tokens if capture else 0
        shape = (tokens, len(native.moe_layer_ids), native.num_experts_per_tok)
        routes = torch.full(shape, -1, dtype=torch.int16) if capture else None
        self.register_buffer("routes_NLK", routes, persistent=False)
        self.register_buffer("positions_N", torch.zeros(tokens, dtype=torch.int64), persistent=False)

    def embed_input_ids(self, input_ids: Tensor) -> Tensor:
        return self.embed_tokens(input_ids)

    def set_expert_kernel(self, kernel: str) -> None:
        """ "auto" (vLLM-CPU's fused MoE kernel where it applies) or "native" (RoutedExperts.forward)."""
        if kernel not in EXPERT_KERNELS:
            raise ValueError(f"expert kernel {kernel!r}: use one of {EXPERT_KERNELS}")
        for layer in self.layers:
            if layer.is_moe:
                layer.mlp.expert_kernel = kernel

    def forward(
        self, input_ids: Tensor | None, positions: Tensor, inputs_embeds: Tensor | None = None
    ) -> Tensor:
        h = self.embed_input_ids(input_ids) if inputs_embeds is None else inputs_embeds
        residual, router_input, routes = None, None, []
        for layer in self.layers:
            pre_gated = router_input if self.pre_gate else None
            h, residual, x, indices_TK = layer(positions, h, residual, pre_gated)
            router_input = x  # pre-gating: the next layer routes on this layer's FFN input
            if indices_TK is not None:
                routes.append(indices_TK)
        if self.routes_NLK is not None:
            self.routes_NLK[: positions.shape[0]].copy_(torch.stack(routes, dim=1))
            self.positions_N[: positions.shape[0]].copy_(positions)
        h, _ = self.norm(h, residual)
        return h


# official name suffix -> (our packed parameter, shard id)
_STACKED = {
    ".q_proj.": (".qkv_proj.", "q"),
    ".k_proj.": (".qkv_proj.", "k"),
    ".v_proj.": (".qkv_proj.", "v"),
    ".gate_proj.": (".gate_up_proj.", 0),
    ".up_proj.": (".gate_up_proj.", 1),
}
_EXPERT = re.compile(r"(model\.layers\.(\d+)\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight")


class MegrezMoeForCausalLM(nn.Module):
    """The vLLM entry class for `architectures: ["MegrezMoeForCausalLM"]`."""

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        if get_tensor_model_parallel_world_size() > 1 or get_pp_group().world_size > 1:
            raise NotImplementedError(
                "MegrezMoeForCausalLM runs with tensor_parallel_size=1 and pipeline_parallel_size=1 "
                "(the 7.5B model fits one GPU in bf16); scale out with more rollout workers"
            )
        self.config = config
        self.native = native_config(config)
        self.model = MegrezMoeModel(
            vllm_config=vllm_config, prefix=f"{prefix}model" if not prefix else f"{prefix}.model"
        )
        # Tied: the embedding module itself computes the logits. A ParallelLMHead sharing its Parameter
        # would be a second layer to vLLM's in-place reload, which finds nothing loaded into it and puts its
        # old tensor back: the engine would then sample through the stale head after every sync.
        if config.tie_word_embeddings:
            self.lm_head = self.model.embed_tokens
        else:
            self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, prefix="lm_head")
        self.logits_processor = LogitsProcessor(config.vocab_size)

    def embed_input_ids(self, input_ids: Tensor) -> Tensor:
        return self.model.embed_input_ids(input_ids)

    def forward(
        self,
        input_ids: Tensor | None,
        positions: Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: Tensor | None = None,
        **_: Any,
    ) -> Tensor:
        return self.model(input_ids, positions, inputs_embeds)

    def compute_logits(self, hidden_states: Tensor) -> Tensor | None:
        return self.logits_processor(self.lm_head, hidden_states)

    def _untied(self, weights: Iterable[tuple[str, Tensor]]) -> Iterator[tuple[str, Tensor]]:
        """The weights without a tied `lm_head.weight`: it is the embedding, and vLLM's reload silently does
        nothing if it is loaded twice. One that differs from the embedding is refused (`rlvr.model.tied`) as
        soon as both are read."""
        tied: dict[str, Tensor] = {}
        for name, tensor in weights:
            if name in (HEAD, EMBEDDING) and self.config.tie_word_embeddings:
                tied[name] = tensor
                check_tied_head(tied)
                if name == HEAD:
                    continue
            yield name, tensor

    def load_weights(self, weights: Iterable[tuple[str, Tensor]]) -> set[str]:
        """Official checkpoint names (or the native state dict's, whose expert banks are stacked) ->
        parameters, each through its `weight_loader`. Routed experts are read only from group leaders; a tied
        `lm_head.weight` is skipped (`_untied`)."""
        for fused in self.model.fused.values():  # packed expert weights describe the old weights
            fused.invalidate()
        params = dict(self.named_parameters())
        loaded: set[str] = set()
        for name, tensor in self._untied(weights):
            if match := _EXPERT.fullmatch(name):
                bank, layer, expert, shard = match[1], int(match[2]), int(match[3]), match[4]
                if self.native.group_leader(layer) != layer:
                    raise ValueError(
                        f"{name}: routed experts belong under the group's first layer "
                        f"({self.native.group_leader(layer)}), not layer {layer}"
                    )
                target = f"{bank}.{'w_down_EDF' if shard == 'down_proj' else 'w_gate_up_E2FD'}"
                param = params[target]
                param.weight_loader(param, tensor, expert_id=expert, shard=shard)
                loaded.add(target)
                continue
            target, shard_id = name, None
            for old, (new, shard) in _STACKED.items():
                if old in name:
                    target, shard_id = name.replace(old, new), shard
                    break
            if target not in params:
                raise ValueError(f"checkpoint tensor {name!r} has no place in MegrezMoeForCausalLM")
            param = params[target]
            loader = getattr(param, "weight_loader", default_weight_loader)
            if shard_id is None:
                loader(param, tensor)
            else:
                loader(param, tensor, shard_id)
            loaded.add(target)
        return loaded
