"""Megrez2 module: sizes, the optimised MoE against an independent naive model, pre-gating, expert sharing,
checkpoint I/O, KV-cache decoding and routing replay. CPU, fp32, the `tiny` preset; a few seconds in all."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import typing

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from rlvr.config import ModelConfig
from rlvr.model import PRESET_NAMES, kernels, parameter_counts, preset_config
from rlvr.model.checkpoint import CheckpointMismatchError, official_views
from rlvr.model.megrez2 import (
    Gate,
    KVCache,
    Megrez2Config,
    Megrez2ForCausalLM,
    RoutedExperts,
    max_violation,
    token_logprobs,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny model is far too small to gain from intra-op threads, and on a busy machine their spin-waits
    make it ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tiny(seed: int = 0, **overrides) -> Megrez2ForCausalLM:
    """The tiny preset with weights large enough that routing and attention are far from uniform, a random
    correction bias (so that selection and mixing weights differ) and non-trivial norm weights."""
    torch.manual_seed(seed)
    model = Megrez2ForCausalLM(Megrez2Config.preset("tiny", **overrides))
    model.reset_parameters(std=0.1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.2 * torch.randn_like(p))
        for i in model.config.moe_layer_ids:
            model.model.layers[i].mlp.gate.e_score_correction_bias.normal_(0, 0.05)
    return model


def random_ids(model: Megrez2ForCausalLM, B: int = 2, T: int = 10, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


# ---- an independent naive model


def naive_forward(model: Megrez2ForCausalLM, ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Megrez2 written from the architecture notes with none of the module's code paths: explicit softmax
    attention, RoPE as complex rotation of (j, j + hd/2) pairs, routing from the formulas, and every token
    sent through each of its selected experts one at a time. Reads the module's parameters, so gradients can
    be compared."""
    cfg = model.config
    B, T = ids.shape
    H, Hkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    Fw = cfg.moe_intermediate_size

    def rms(x, w):
        return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.rms_norm_eps))

    def swiglu(x, w_gate, w_up, w_down):
        return (F.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T

    def rope(x):  # (B, T, n, hd)
        freqs = cfg.rope_theta ** (-torch.arange(hd // 2, dtype=torch.float64) * 2 / hd)
        angle = torch.arange(T, dtype=torch.float64)[:, None] * freqs  # (T, hd/2)
        rot = torch.polar(torch.ones_like(angle), angle).to(torch.complex64)
        z = torch.complex(x[..., : hd // 2], x[..., hd // 2 :]) * rot[None, :, None]
        return torch.cat([z.real, z.imag], dim=-1)

    layers = model.model.layers
    h = model.model.embed_tokens.weight[ids]
    x_prev, chosen = None, []
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for i, layer in enumerate(layers):
        att = layer.self_attn
        xn = rms(h, layer.input_layernorm.weight)
        q = rope((xn @ att.q_proj.weight.T).view(B, T, H, hd))
        k = rope((xn @ att.k_proj.weight.T).view(B, T, Hkv, hd))
        v = (xn @ att.v_proj.weight.T).view(B, T, Hkv, hd)
        heads = []
        for head in range(H):
            kv = head // (H // Hkv)
            s = torch.einsum("btd,bsd->bts", q[:, :, head], k[:, :, kv]) / math.sqrt(hd)
            p = s.masked_fill(~causal, float("-inf")).softmax(-1)
            heads.append(torch.einsum("bts,bsd->btd", p, v[:, :, kv]))
        a = h + torch.cat(heads, dim=-1) @ att.o_proj.weight.T
        x = rms(a, layer.post_attention_layernorm.weight)
        if i < cfg.first_k_dense_replace:
            f = swiglu(x, layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight, layer.mlp.down_proj.weight)
        else:
            gate = layer.mlp.gate
            router_in = x_prev if cfg.pre_gate else x
            scores = torch.sigmoid(router_in @ gate.weight.T)  # (B, T, E)
            biased = (scores + gate.e_score_correction_bias).detach()
            if cfg.n_group > 1:
                per = cfg.n_routed_experts // cfg.n_group
                g = biased.view(B, T, cfg.n_group, per).topk(2, -1).values.sum(-1)
                best = g.topk(cfg.topk_group, -1).indices
                allowed = torch.zeros_like(g, dtype=torch.bool).scatter(-1, best, True)
                biased = biased.masked_fill(~allowed.repeat_interleave(per, -1), float("-inf"))
            idx = biased.topk(cfg.num_experts_per_tok, -1).indices
            w = scores.gather(-1, idx)
            w = w / w.sum(-1, keepdim=True) * cfg.routed_scaling_factor
            chosen.append(idx)
            leader = cfg.first_k_dense_replace + (i - cfg.first_k_dense_replace) // 3 * 3
            bank = layers[leader].mlp.experts
            sh = layer.mlp.shared_experts
            rows = []
            for b in range(B):
                for t in range(T):
                    y = swiglu(x[b, t], sh.gate_proj.weight, sh.up_proj.weight, sh.down_proj.weight)
                    for kk in range(cfg.num_experts_per_tok):
                        e = int(idx[b, t, kk])
                        w_gate, w_up = bank.w_gate_up_E2FD[e, :Fw], bank.w_gate_up_E2FD[e, Fw:]
                        y = y + w[b, t, kk] * swiglu(x[b, t], w_gate, w_up, bank.w_down_EDF[e])
                    rows.append(y)
            f = torch.stack(rows).view(B, T, -1)
        h = a + f
        x_prev = x
    logits = rms(h, model.model.norm.weight) @ model.lm_head.weight.T
    return logits, chosen


def grads_of(model, loss_fn) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss_fn().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# ---- sizes and config


def test_real_config_parameter_count_on_meta_device() -> None:
    with torch.device("meta"):
        model = Megrez2ForCausalLM(Megrez2Config.preset("megrez2-3x7b-a3b"))
    stored = model.num_parameters()
    activated = model.num_parameters(activated=True, embeddings=False)
    counts = parameter_counts(model.config)
    assert (counts["stored"], counts["activated_no_embeddings"]) == (stored, activated)
    assert counts["activated"] == activated + 2 * 128880 * 2048  # plus embed_tokens and lm_head
    assert stored == 7_498_825_600  # model card: 7.5B
    assert activated == 2_991_587_200  # model card: 3B activated
    assert abs(stored - 7.50e9) < 0.05e9 and abs(activated - 3.0e9) < 0.05e9
    banks = {id(model.model.layers[i].mlp.experts) for i in model.config.moe_layer_ids}
    assert len(banks) == 10


def test_config_json_keeps_unknown_keys(tmp_path) -> None:
    raw = Megrez2Config().to_dict()
    for key in ("head_dim", "num_key_value_heads"):
        del raw[key]  # absent keys get the HF defaults
    raw.update(aux_loss_alpha=0.001, seq_aux=True, bos_token_id=None, eos_token_id=120005, rope_scaling=None)
    raw.update(rope_theta=5e6, n_group=8, topk_group=4)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    config = Megrez2Config.from_json(tmp_path / "config.json")
    assert config.head_dim == 128 and config.num_key_value_heads == 16 and config.rope_theta == 5e6
    extra = {"aux_loss_alpha": 0.001, "seq_aux": True, "bos_token_id": None, "eos_token_id": 120005}
    assert config.extra == {**extra, "rope_scaling": None}
    config.to_json(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == {
        **raw,
        "head_dim": 128,
        "num_key_value_heads": 16,
    }
    with pytest.raises(ValueError, match="scoring_func"):
        Megrez2Config.from_dict({**raw, "scoring_func": "softmax"})


def test_presets_cover_the_recipe_field() -> None:
    literal, _ = typing.get_args(ModelConfig.model_fields["preset"].annotation)
    assert set(typing.get_args(literal)) == set(PRESET_NAMES)
    tiny = preset_config("tiny")
    assert (tiny.hidden_size, tiny.num_hidden_layers, tiny.n_routed_experts) == (64, 7, 8)
    assert (tiny.num_experts_per_tok, tiny.n_shared_experts) == (2, 1)
    assert [tiny.group_leader(i) for i in tiny.moe_layer_ids] == [1, 1, 1, 4, 4, 4]
    assert 100e6 <= parameter_counts(preset_config("small"))["stored"] <= 300e6
    assert preset_config("tiny", pre_gate=False).pre_gate is False
    with pytest.raises(KeyError, match="known: "):
        preset_config("huge")


# ---- the MoE against the naive model


@pytest.mark.parametrize(
    "overrides",
    [
        {"pre_gate": True},
        {"pre_gate": False},
        {"pre_gate": True, "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5},
    ],
    ids=["pre_gate", "same_layer", "grouped_topk"],
)
@pytest.mark.parametrize("kernel", ["fused", "grouped_mm", "loop"])
def test_optimised_forward_and_grads_match_naive_model(overrides, kernel) -> None:
    model = make_tiny(**overrides)
    for i in model.config.moe_layer_ids:
        model.model.layers[i].mlp.experts.kernel = kernel
    ids = random_ids(model)
    probe = torch.randn(*ids.shape, model.config.vocab_size, generator=torch.Generator().manual_seed(2))

    ref_logits, ref_chosen = naive_forward(model, ids)
    out = model(ids)
    torch.testing.assert_close(out.logits, ref_logits, rtol=0, atol=1e-5)
    assert torch.equal(out.expert_indices, torch.stack(ref_chosen))

    ref_grads = grads_of(model, lambda: (naive_forward(model, ids)[0] * probe).sum())
    grads = grads_of(model, lambda: (model(ids).logits * probe).sum())
    assert grads.keys() == ref_grads.keys()
    for name in grads:  # 1e-5 relative to the tensor's largest gradient (they reach 1e2 here)
        scale = ref_grads[name].abs().max().item()
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("workers", [False, True], ids=["inline", "workers"])
def test_routed_experts_match_their_loop_reference(workers, monkeypatch, request) -> None:
    """Every kernel against the plain per-expert loop, forward and backward; experts 6 and 7 get no tokens
    (their gradient must be exactly zero, not stale memory). The fused kernel runs a call this small on the
    caller's thread, unless there are 2 threads and the workers' threshold is lowered."""
    if workers:
        monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 0)
        request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
        torch.set_num_threads(2)
    torch.manual_seed(0)
    bank = RoutedExperts(num_experts=8, dim=64, hidden=32)
    torch.nn.init.normal_(bank.w_gate_up_E2FD, std=0.1)
    torch.nn.init.normal_(bank.w_down_EDF, std=0.1)
    x = torch.randn(50, 64, requires_grad=True)
    indices = torch.stack([torch.randperm(6)[:3] for _ in range(50)])
    weights = torch.rand(50, 3, requires_grad=True)
    probe = torch.randn(50, 64)

    def run(fn):
        params = [x, weights, bank.w_gate_up_E2FD, bank.w_down_EDF]
        for p in params:
            p.grad = None
        out = fn(x, weights, indices)
        (out * probe).sum().backward()
        return out.detach(), [p.grad.clone() for p in params]

    expected, expected_grads = run(bank.forward_loop)
    for kernel in ("fused", "grouped_mm", "loop"):
        bank.kernel = kernel
        out, grads = run(bank)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
        for got, ref in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        assert not grads[2][6:].any() and not grads[3][6:].any()


def test_fused_experts_are_bit_for_bit_reproducible_whatever_the_thread_count() -> None:
    """The fused CPU kernel hands experts to as many workers as there are intra-op threads, in whatever order
    they come free; each expert's rows are one thread's work, so the output and every gradient are the same
    bits on 1 (no workers), 2 or 3 threads and from run to run (routing replay needs reproducible logits).
    The call is large enough for the workers (kernels.PARALLEL_MIN_WORK)."""
    torch.manual_seed(0)
    bank = RoutedExperts(num_experts=8, dim=256, hidden=128)
    torch.nn.init.normal_(bank.w_gate_up_E2FD, std=0.1)
    torch.nn.init.normal_(bank.w_down_EDF, std=0.1)
    x = torch.randn(512, 256, requires_grad=True)
    indices = torch.stack([torch.randperm(8)[:2] for _ in range(512)])
    weights = torch.rand(512, 2, requires_grad=True)
    params = [x, weights, bank.w_gate_up_E2FD, bank.w_down_EDF]

    def run() -> list[torch.Tensor]:
        for p in params:
            p.grad = None
        out = bank(x, weights, indices)
        out.square().sum().backward()
        return [out.detach(), *(p.grad for p in params)]

    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3, 2):
            torch.set_num_threads(n)
            results.append(run())
        with torch.inference_mode():  # grad and inference mode are per thread: the workers take the caller's
            inferred = bank(x, weights, indices)
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))
    assert torch.equal(inferred, results[0][0])


def test_unknown_expert_kernel_is_refused() -> None:
    bank = RoutedExperts(num_experts=4, dim=16, hidden=8)
    bank.kernel = "fast"
    with pytest.raises(ValueError, match="unknown expert kernel 'fast'"):
        bank(torch.randn(3, 16), torch.rand(3, 2), torch.tensor([[0, 1], [1, 2], [2, 3]]))


def test_gate_bias_picks_experts_but_does_not_weight_them() -> None:
    config = Megrez2Config.preset("tiny", routed_scaling_factor=2.5)
    gate = Gate(config)
    torch.nn.init.normal_(gate.weight, std=0.3)
    x = torch.randn(20, config.hidden_size, generator=torch.Generator().manual_seed(0))
    scores = torch.sigmoid(x @ gate.weight.detach().T)

    weights, indices = gate(x)  # no bias: plain top-2 of the scores
    assert torch.equal(indices, scores.topk(2, dim=-1).indices)

    with torch.no_grad():
        gate.e_score_correction_bias[6:] = 1.0  # larger than any score gap: experts 6 and 7 win everywhere
    weights, indices = gate(x)
    assert torch.equal(indices.sort(-1).values, torch.tensor([[6, 7]]).expand(20, 2))
    picked = scores.gather(1, indices)  # the un-biased scores of the picked experts
    torch.testing.assert_close(weights, 2.5 * picked / picked.sum(-1, keepdim=True), rtol=0, atol=1e-6)

    with torch.no_grad():
        gate.e_score_correction_bias[6:] = 5.0  # same choice, larger bias: the weights do not move
    assert torch.equal(gate(x)[0], weights)


# ---- pre-gating


def _route_with_perturbed_ffn_input(model, ids, layer_id):
    def add_noise(module, args, output):
        return output + torch.randn(output.shape, generator=torch.Generator().manual_seed(3))

    handle = model.model.layers[layer_id].post_attention_layernorm.register_forward_hook(add_noise)
    try:
        return model(ids).expert_indices
    finally:
        handle.remove()


@pytest.mark.parametrize("pre_gate", [True, False])
def test_pre_gating_reads_the_previous_layers_ffn_input(pre_gate) -> None:
    model = make_tiny(pre_gate=pre_gate)
    ids = random_ids(model, T=16)
    i = 2  # a MoE layer; its index among MoE layers is i - 1
    base = model(ids).expert_indices
    perturbed = _route_with_perturbed_ffn_input(model, ids, i)
    assert torch.equal(perturbed[: i - 1], base[: i - 1])  # earlier layers untouched either way
    if pre_gate:
        assert torch.equal(perturbed[i - 1], base[i - 1]), "layer i must route on layer i-1's FFN input"
        assert not torch.equal(perturbed[i], base[i]), "layer i+1 must route on layer i's FFN input"
    else:
        assert not torch.equal(perturbed[i - 1], base[i - 1]), "layer i must route on its own FFN input"

    # The router's input is exactly the FFN input of the layer before (pre_gate) or of its own layer.
    gate_in, ffn_in, hooks = {}, {}, []
    for j, layer in enumerate(model.model.layers):
        hooks.append(
            layer.post_attention_layernorm.register_forward_hook(lambda m, a, o, j=j: ffn_in.update({j: o}))
        )
        if layer.is_moe:
            hooks.append(layer.mlp.gate.register_forward_hook(lambda m, a, o, j=j: gate_in.update({j: a[0]})))
    model(ids)
    for h in hooks:
        h.remove()
    for j in model.config.moe_layer_ids:
        source = ffn_in[j - 1] if pre_gate else ffn_in[j]
        assert torch.equal(gate_in[j], source.reshape(-1, source.shape[-1]))


@pytest.mark.parametrize("pre_gate", [True, False])
def test_route_hook_fires_one_ffn_ahead_with_pre_gating(pre_gate) -> None:
    """`register_route_hook` reports layer i+1's experts before layer i's FFN runs: an engine's prefetch
    point. Without pre-gating it can only report them at layer i+1 itself."""
    model = make_tiny(pre_gate=pre_gate)
    events, routes = [], {}

    def on_route(layer_id, weights_TK, indices_TK):
        events.append(("route", layer_id))
        routes[layer_id] = indices_TK

    hooks = model.register_route_hook(on_route)
    ffn_hooks = [
        model.model.layers[j].mlp.register_forward_hook(lambda m, a, o, j=j: events.append(("ffn", j)))
        for j in range(model.config.num_hidden_layers)
    ]
    out = model(random_ids(model))
    hooks.remove()
    for h in ffn_hooks:
        h.remove()
    for j in model.config.moe_layer_ids:
        ahead = events.index(("route", j)) < events.index(("ffn", j - 1))
        assert ahead == pre_gate
        assert torch.equal(routes[j], out.expert_indices[j - 1].reshape(routes[j].shape))
    assert len(events) == len(model.config.moe_layer_ids) + model.config.num_hidden_layers
    model(random_ids(model))
    assert len(events) == len(model.config.moe_layer_ids) + model.config.num_hidden_layers  # hooks removed


# ---- cross-layer sharing


def test_group_shares_one_expert_bank() -> None:
    model = make_tiny()
    layers = model.model.layers
    assert layers[1].mlp.experts is layers[2].mlp.experts is layers[3].mlp.experts
    assert layers[4].mlp.experts is layers[5].mlp.experts is layers[6].mlp.experts
    assert layers[1].mlp.experts is not layers[4].mlp.experts
    assert layers[2].mlp.experts.w_gate_up_E2FD is layers[1].mlp.experts.w_gate_up_E2FD
    assert layers[2].mlp.gate is not layers[1].mlp.gate  # routers, shared experts, norms stay per layer
    assert layers[2].mlp.shared_experts is not layers[1].mlp.shared_experts

    bank_names = [n for n, _ in model.named_parameters() if ".experts." in n]
    assert bank_names == [
        f"model.layers.{i}.mlp.experts.{w}" for i in (1, 4) for w in ("w_gate_up_E2FD", "w_down_EDF")
    ]
    expert_layers = {int(n.split(".")[2]) for n in official_views(model) if ".mlp.experts." in n}
    assert expert_layers == {1, 4}
    state = model.state_dict()
    assert [n for n in state if ".experts." in n] == bank_names
    fresh = Megrez2ForCausalLM(model.config)
    fresh.load_state_dict(state, strict=True)  # the borrowing layers take the leader's entry
    assert fresh.model.layers[3].mlp.experts is fresh.model.layers[1].mlp.experts
    assert torch.equal(fresh.model.layers[3].mlp.experts.w_down_EDF, layers[1].mlp.experts.w_down_EDF)

    # Gradients from the three layers accumulate in one tensor; one AdamW step moves it once (|step| <= lr).
    bank = layers[1].mlp.experts.w_gate_up_E2FD
    model(random_ids(model)).logits.square().mean().backward()
    before = bank.detach().clone()
    lr = 1e-3
    torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0).step()
    step = (bank.detach() - before).abs()
    assert step.max() <= lr * 1.001 and step.max() > lr * 0.5


def test_bank_gradient_is_the_sum_over_its_three_layers() -> None:
    """Untie the bank of group {1, 2, 3} into three equal copies: each copy gets a gradient of its own, and
    their sum is the tied bank's gradient."""
    model = make_tiny()
    ids = random_ids(model)
    route = model(ids).expert_indices
    tied = grads_of(model, lambda: model(ids, replay_indices=route).logits.square().mean())

    untied = copy.deepcopy(model)
    for i in (2, 3):
        untied.model.layers[i].mlp.experts = copy.deepcopy(untied.model.layers[1].mlp.experts)
    untied(ids, replay_indices=route).logits.square().mean().backward()
    for name in ("w_gate_up_E2FD", "w_down_EDF"):
        per_layer = [getattr(untied.model.layers[i].mlp.experts, name).grad for i in (1, 2, 3)]
        assert all(g.abs().sum() > 0 for g in per_layer)
        total = tied[f"model.layers.1.mlp.experts.{name}"]
        torch.testing.assert_close(sum(per_layer), total, rtol=1e-5, atol=1e-5 * total.abs().max().item())


# ---- checkpoints


def official_checkpoint(config: Megrez2Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under every name of the official layout, written from the published list (issue 3,
    the architecture notes) rather than from the module: per-expert tensors only under leader layers."""
    g = torch.Generator().manual_seed(seed)
    D, hd, E = config.hidden_size, config.head_dim, config.n_routed_experts
    Fe, Fs = config.moe_intermediate_size, config.n_shared_experts * config.moe_intermediate_size

    def rand(*shape):
        return 0.1 * torch.randn(*shape, generator=g)

    t = {"model.embed_tokens.weight": rand(config.vocab_size, D)}
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = rand(config.num_attention_heads * hd, D)
        t[p + "self_attn.k_proj.weight"] = rand(config.num_key_value_heads * hd, D)
        t[p + "self_attn.v_proj.weight"] = rand(config.num_key_value_heads * hd, D)
        t[p + "self_attn.o_proj.weight"] = rand(D, config.num_attention_heads * hd)
        t[p + "input_layernorm.weight"] = 1 + rand(D)
        t[p + "post_attention_layernorm.weight"] = 1 + rand(D)
        if i == 0:
            t[p + "mlp.gate_proj.weight"] = rand(config.intermediate_size, D)
            t[p + "mlp.up_proj.weight"] = rand(config.intermediate_size, D)
            t[p + "mlp.down_proj.weight"] = rand(D, config.intermediate_size)
            continue
        t[p + "mlp.gate.weight"] = rand(E, D)
        t[p + "mlp.gate.e_score_correction_bias"] = rand(E)
        t[p + "mlp.shared_experts.gate_proj.weight"] = rand(Fs, D)
        t[p + "mlp.shared_experts.up_proj.weight"] = rand(Fs, D)
        t[p + "mlp.shared_experts.down_proj.weight"] = rand(D, Fs)
        if (i - 1) % 3 == 0:  # leaders 1, 4
            for j in range(E):
                t[p + f"mlp.experts.{j}.gate_proj.weight"] = rand(Fe, D)
                t[p + f"mlp.experts.{j}.up_proj.weight"] = rand(Fe, D)
                t[p + f"mlp.experts.{j}.down_proj.weight"] = rand(D, Fe)
    t["model.norm.weight"] = 1 + rand(D)
    t["lm_head.weight"] = rand(config.vocab_size, D)
    return t


def test_loads_a_sharded_checkpoint_written_under_the_official_names(tmp_path) -> None:
    config = Megrez2Config.preset("tiny")
    tensors = official_checkpoint(config)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in shards.items():
        save_file({n: tensors[n] for n in part}, tmp_path / file)
    weight_map = {n: file for file, part in shards.items() for n in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    config.to_json(tmp_path / "config.json")

    model = Megrez2ForCausalLM.from_pretrained(tmp_path)
    state = model.state_dict()
    for name, tensor in tensors.items():
        if ".mlp.experts." not in name:
            assert torch.equal(state[name], tensor), name
    layers = model.model.layers
    assert layers[5].mlp.experts is layers[4].mlp.experts and layers[6].mlp.experts is layers[4].mlp.experts
    # Expert j of the bank layer 5 uses is down(silu(gate(x)) * up(x)) with layer 4's expert-j tensors.
    x = torch.randn(3, config.hidden_size)
    for j in (0, 5, 7):
        p = f"model.layers.4.mlp.experts.{j}."
        gate, up, down = (tensors[p + f"{w}_proj.weight"] for w in ("gate", "up", "down"))
        expected = (F.silu(x @ gate.T) * (x @ up.T)) @ down.T
        with torch.no_grad():
            got = layers[5].mlp.experts(x, torch.ones(3, 1), torch.full((3, 1), j))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_save_load_round_trip_is_bit_exact(tmp_path) -> None:
    model = make_tiny()
    ids = random_ids(model)
    for max_shard_bytes, files in ((1 << 30, ["model.safetensors"]), (200_000, None)):
        path = tmp_path / f"ckpt_{max_shard_bytes}"
        model.save_pretrained(path, max_shard_bytes=max_shard_bytes)
        if files:
            assert sorted(p.name for p in path.glob("*.safetensors")) == files
        else:  # sharded, with an index naming every tensor
            index = json.loads((path / "model.safetensors.index.json").read_text())
            assert len(set(index["weight_map"].values())) > 1
            assert index["weight_map"].keys() == official_views(model).keys()
        loaded = Megrez2ForCausalLM.from_pretrained(path)
        assert loaded.config == dataclasses.replace(model.config, torch_dtype="float32")
        for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b), name
        assert loaded.model.layers[3].mlp.experts is loaded.model.layers[1].mlp.experts
        assert torch.equal(loaded(ids).logits, model(ids).logits)

    names = load_file(tmp_path / "ckpt_1073741824" / "model.safetensors").keys()
    assert "model.layers.4.mlp.experts.7.down_proj.weight" in names
    assert "model.layers.5.mlp.gate.e_score_correction_bias" in names
    assert not any(n.startswith(("model.layers.2.mlp.experts", "model.layers.0.mlp.gate.")) for n in names)


def test_loading_a_mismatched_checkpoint_lists_the_names(tmp_path) -> None:
    model = make_tiny()
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["model.layers.4.mlp.experts.3.up_proj.weight"]
    tensors["model.layers.2.mlp.experts.0.gate_proj.weight"] = torch.zeros(32, 64)  # a non-leader bank
    tensors["model.norm.weight"] = torch.ones(65)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointMismatchError) as err:
        Megrez2ForCausalLM.from_pretrained(tmp_path)
    message = str(err.value)
    assert "missing (1):\n    model.layers.4.mlp.experts.3.up_proj.weight" in message
    assert "unexpected (1):\n    model.layers.2.mlp.experts.0.gate_proj.weight" in message
    assert "model.norm.weight: checkpoint [65] vs model [64]" in message


def test_loading_to_bfloat16_keeps_router_bias_in_fp32(tmp_path) -> None:
    make_tiny().save_pretrained(tmp_path)
    model = Megrez2ForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert model.model.layers[1].mlp.gate.e_score_correction_bias.dtype == torch.float32


# ---- KV cache


@pytest.mark.parametrize("padding", ["none", "left", "right"])
def test_kv_cache_decode_matches_full_forward(padding) -> None:
    model = make_tiny().eval()
    lengths = [6, 6, 6] if padding == "none" else [6, 3, 5]
    n_new, width = 4, max(lengths)
    seqs = [random_ids(model, B=1, T=n + n_new, seed=10 + r)[0] for r, n in enumerate(lengths)]
    prompt = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for r, n in enumerate(lengths):
        cols = slice(width - n, width) if padding == "left" else slice(0, n)
        prompt[r, cols], mask[r, cols] = seqs[r][:n], 1

    with torch.no_grad():
        full = [model(s[None]).logits[0] for s in seqs]  # each row alone, unpadded
        padded = model(prompt, attention_mask=mask).logits  # full forward with padding, no cache
        cache = KVCache.allocate(model.config, batch_size=len(seqs), max_len=width + n_new)
        prefill = model(prompt, attention_mask=None if padding == "none" else mask, cache=cache).logits
        for r, n in enumerate(lengths):
            cols = slice(width - n, width) if padding == "left" else slice(0, n)
            torch.testing.assert_close(prefill[r, cols], full[r][:n], rtol=0, atol=1e-5)
            torch.testing.assert_close(padded[r, cols], full[r][:n], rtol=0, atol=1e-5)
        for step in range(n_new):
            token = torch.stack([s[n + step] for s, n in zip(seqs, lengths, strict=True)])[:, None]
            logits = model(token, cache=cache).logits[:, 0]
            for r, n in enumerate(lengths):
                torch.testing.assert_close(logits[r], full[r][n + step], rtol=0, atol=1e-5)
    assert cache.length == width + n_new and cache.next_pos.tolist() == [n + n_new for n in lengths]


# ---- routing replay, training features


@pytest.mark.parametrize("pre_gate", [True, False])
def test_routing_replay_reproduces_logits_exactly(pre_gate) -> None:
    model = make_tiny(pre_gate=pre_gate)
    ids = random_ids(model)
    out = model(ids)
    replayed = model(ids, replay_indices=out.expert_indices)
    assert torch.equal(replayed.logits, out.logits)
    assert torch.equal(replayed.expert_indices, out.expert_indices)

    # Other experts: they are used, with mixing weights from the current router.
    forced = (out.expert_indices + 1) % model.config.n_routed_experts
    other = model(ids, replay_indices=forced)
    assert torch.equal(other.expert_indices, forced) and not torch.allclose(other.logits, out.logits)


def test_replay_rows_of_minus_one_route_as_usual_and_the_routers_own_choice_is_reported() -> None:
    """R3's learner side: tokens without a recorded choice (-1: the last sampled token, padding) route as
    usual; `router_choice` is what each router would pick on the states the replayed forward computes."""
    model = make_tiny()
    ids = random_ids(model)
    out = model(ids)
    assert out.router_choice is out.expert_indices  # no replay: the router's choice is what was used
    replay = ((out.expert_indices + 1) % model.config.n_routed_experts).clone()
    replay[:, :, -3:] = -1  # the last three tokens of every row keep their own routing
    mixed = model(ids, replay_indices=replay)
    assert torch.equal(mixed.expert_indices[:, :, :-3], replay[:, :, :-3])
    assert torch.equal(mixed.expert_indices[:, :, -3:], mixed.router_choice[:, :, -3:])
    # where replayed, the router's own pick is reported, not the imposed one
    assert not torch.equal(mixed.router_choice[:, :, :-3], replay[:, :, :-3])
    all_replayed = model(ids, replay_indices=out.expert_indices)
    assert torch.equal(all_replayed.router_choice, out.expert_indices)  # same states, same own choice


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    model = make_tiny()
    ids = random_ids(model)
    plain = grads_of(model, lambda: model(ids).logits.square().mean())
    model.config.activation_checkpointing = True
    recomputed = grads_of(model, lambda: model(ids).logits.square().mean())
    for name in plain:
        torch.testing.assert_close(recomputed[name], plain[name], rtol=1e-6, atol=1e-7, msg=name)


def test_expert_counts_and_bias_update() -> None:
    model = make_tiny(router_bias_update_rate=0.01)
    ids = random_ids(model, T=12)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    out = model(ids, attention_mask=mask)
    K = model.config.num_experts_per_tok
    assert out.expert_counts.shape == (6, 8) and (out.expert_counts.sum(-1) == (ids.numel() - 5) * K).all()
    assert (max_violation(out.expert_counts) >= 0).all()

    gate = model.model.layers[1].mlp.gate
    before = gate.e_score_correction_bias.clone()
    model.update_router_bias(out.expert_counts)
    load = out.expert_counts[0].float()
    torch.testing.assert_close(gate.e_score_correction_bias - before, 0.01 * torch.sign(load.mean() - load))
    model.config.router_bias_update_rate = 0.0  # off (RL): nothing moves
    model.update_router_bias(out.expert_counts)
    torch.testing.assert_close(gate.e_score_correction_bias - before, 0.01 * torch.sign(load.mean() - load))


def test_bf16_autocast_and_token_logprobs() -> None:
    model = make_tiny()
    ids = random_ids(model)
    ref = model(ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, replay_indices=ref.expert_indices)
    assert out.logits.dtype == torch.bfloat16
    assert (out.logits.float() - ref.logits).norm() / ref.logits.norm() < 2e-2
    logp = token_logprobs(ref.logits[:, :-1], ids[:, 1:])
    expected = torch.log_softmax(ref.logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    torch.testing.assert_close(logp, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_gpu_forward_matches_fp32_cpu_reference() -> None:
    model = make_tiny()
    ids = random_ids(model, B=4, T=64)
    ref = model(ids)
    gpu = make_tiny().cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        chosen = gpu(ids.cuda())  # its own routing: bf16 inputs may flip near-ties, rarely
        replayed = gpu(ids.cuda(), replay_indices=ref.expert_indices.cuda())  # the CPU's experts
    agree = (chosen.expert_indices.cpu().sort(-1).values == ref.expert_indices.sort(-1).values).float().mean()
    assert agree > 0.9
    rel = (replayed.logits.float().cpu() - ref.logits).norm() / ref.logits.norm()
    assert rel < 2e-2, rel
    with torch.autocast("cuda", dtype=torch.bfloat16):  # grouped GEMM path == per-expert loop path on GPU
        for i in gpu.config.moe_layer_ids:
            gpu.model.layers[i].mlp.experts.kernel = "loop"
        loop = gpu(ids.cuda(), replay_indices=ref.expert_indices.cuda())
    assert (loop.logits.float() - replayed.logits.float()).norm() / replayed.logits.float().norm() < 1e-2
