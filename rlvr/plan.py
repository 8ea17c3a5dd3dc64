"""What `rlvr train --dry-run` checks and prints: data, verifier, model size and the actor plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlvr.config import RecipeConfig


@dataclass
class PlanReport:
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def text(self) -> str:
        out = list(self.lines)
        out += [f"warning: {w}" for w in self.warnings]
        out += [f"error: {e}" for e in self.errors]
        return "\n".join(out)


def check_data(config: RecipeConfig, report: PlanReport) -> None:
    from rlvr.data import read_prompt_file

    for key in ("train_files", "eval_files"):
        for i, path in enumerate(getattr(config.data, key)):
            where = f"data.{key}[{i}]"
            try:
                prompts = read_prompt_file(path)
            except FileNotFoundError as exc:
                # the cluster may hold data the submitting machine doesn't; a run fails on it, a plan warns
                report.warnings.append(f"{where}: {exc} on this machine; training needs it")
                continue
            except ValueError as exc:
                report.errors.append(f"{where}: {exc}")
                continue
            report.lines.append(f"{where}: {path}: {len(prompts.rows)} rows, {prompts.malformed} malformed")
            report.lines += [f"  malformed {p}" for p in prompts.problems[:5]]
            if not prompts.rows:
                report.errors.append(f"{where}: {path} has no valid rows")


def check_verifier(config: RecipeConfig, report: PlanReport) -> None:
    from verifiers import get_verifier

    v = config.verifier
    try:
        get_verifier(v.name, reward_correct=v.reward_correct, reward_wrong=v.reward_wrong, **v.options)
    except TypeError as exc:  # the verifier was found; its keyword arguments come from verifier.options
        report.errors.append(f"verifier.options: {exc}" if v.options else f"verifier.name: {exc}")
        return
    except (ValueError, ImportError) as exc:
        report.errors.append(f"verifier.name: {exc}")
        return
    report.lines.append(
        f"verifier: {v.name} ({v.workers} actor(s) x {v.processes} processes, soft limit {v.soft_timeout_s}s)"
    )


def describe_model(config: RecipeConfig, report: PlanReport) -> None:
    """Builds the model on the meta device (no memory) and reports its size and the learner's memory floor."""
    import torch

    from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM

    m = config.model
    if m.path is not None:
        config_file = Path(m.path) / "config.json"
        if not config_file.exists():
            report.warnings.append(f"model.path: {config_file} not found on this machine; sizes from preset")
            if m.preset is None:
                return
            model_config = Megrez2Config.preset(m.preset)
        else:
            model_config = Megrez2Config.from_json(config_file)
    else:
        model_config = Megrez2Config.preset(m.preset or "tiny")
    with torch.device("meta"):
        model = Megrez2ForCausalLM(model_config)
    total, active = model.num_parameters(), model.num_parameters(activated=True, embeddings=False)
    # fp32 master weights + grads + AdamW moments = 16 bytes per parameter, before sharding
    report.lines.append(
        f"model: {model_config.num_hidden_layers} layers, hidden {model_config.hidden_size}, "
        f"{model_config.n_routed_experts} experts top-{model_config.num_experts_per_tok}; {_count(total)} "
        f"parameters, {_count(active)} activated per token (no embeddings); learner state "
        f"(fp32 weights, grads, AdamW) {total * 16 / 2**30:.1f} GiB"
    )
    report.lines.append(micro_batch_line(config, model_config))
    res = config.resources
    per_rank = total * 16 / 2**30 / (res.learner_workers if res.fsdp else 1)
    report.lines.append(
        f"learner state per rank: {per_rank:.1f} GiB ({'FSDP2-sharded' if res.fsdp else 'replicated'})"
    )
    if res.gpus_per_learner > 0 and per_rank > 70:
        report.warnings.append(
            f"each learner rank holds {per_rank:.0f} GiB of learner state before activations: set "
            "resources.fsdp: true and/or more learner_workers, or use GPUs with more memory"
        )


def activation_bytes(model: Any, tokens: int, width: int, checkpointing: bool) -> int:
    """Activations a learner forward keeps for its backward, `tokens` packed tokens at `width` bytes an
    element. Per token and layer (the tensors autograd saves, counted from `rlvr/model`): the two norms' in
    and out (4D), q, k, v before and after RoPE and the attention output (3·H·hd + 4·Hkv·hd), the router's
    scores (E); a MoE layer's K dispatched rows, gate/up, silu·up and down outputs (K·(2D + 4F)) and the
    shared experts' (4·F_shared); a dense layer's MLP (4·I). Activation checkpointing keeps each layer's input
    instead, and one layer's worth at a time. An estimate (±30%): allocator slack and temporaries are not
    counted."""
    c = model
    attention = (
        4 * c.hidden_size + 3 * c.num_attention_heads * c.head_dim + 4 * c.num_key_value_heads * c.head_dim
    )
    shared = 4 * c.n_shared_experts * c.moe_intermediate_size
    moe = (
        c.num_experts_per_tok * (2 * c.hidden_size + 4 * c.moe_intermediate_size)
        + shared
        + c.n_routed_experts
    )
    per_layer = [
        attention + (moe if c.is_moe_layer(i) else 4 * c.intermediate_size)
        for i in range(c.num_hidden_layers)
    ]
    kept = c.num_hidden_layers * c.hidden_size + max(per_layer) if checkpointing else sum(per_layer)
    return tokens * kept * width


def micro_batch_line(config: RecipeConfig, model: Any) -> str:
    """What one learner micro-batch costs: its activations, the LM head's chunk of logits, and the full logits
    that chunking avoids."""
    from rlvr.model.sampling import LOGPROB_CHUNK

    a, m = config.algorithm, config.model
    device = "cuda" if config.resources.gpus_per_learner > 0 else "cpu"
    width = 2 if m.compute_dtype(device) == "bfloat16" else 4
    tokens = a.micro_batch_tokens
    acts = activation_bytes(model, tokens, width, m.activation_checkpointing)
    chunk = 4 * LOGPROB_CHUNK * model.vocab_size * 4  # z, processed z, p, dz in fp32
    full = 3 * tokens * model.vocab_size * 4  # logits, processed copy, log-softmax: what is not built
    return (
        f"learner micro-batch: {tokens} packed tokens ~{acts / 2**30:.1f} GiB of activations "
        f"({'checkpointed' if m.activation_checkpointing else 'no checkpointing'}, {8 * width}-bit) + "
        f"{chunk / 2**30:.2f} GiB for the LM head's {LOGPROB_CHUNK}-token chunk (the full fp32 logits and "
        f"their copies, never built, would be {full / 2**30:.1f} GiB)"
    )


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def actor_plan(config: RecipeConfig) -> list[str]:
    r, res = config.rollout, config.resources
    gpus = res.learner_workers * res.gpus_per_learner + r.workers * res.gpus_per_rollout_worker
    return [
        f"rollout workers: {r.workers} x {r.engine} engine, {res.gpus_per_rollout_worker} GPU each",
        f"verifier workers: {config.verifier.workers} x VerifierPool({config.verifier.processes} processes)",
        f"learners: {res.learner_workers} rank(s), {res.gpus_per_learner} GPU each",
        f"per step: {r.prompts_per_step} prompts x {r.n} samples = {r.prompts_per_step * r.n} rollouts",
        f"GPUs: {gpus:g} in all",
    ]


def check_recipe(config: RecipeConfig) -> PlanReport:
    report = PlanReport()
    check_data(config, report)
    check_verifier(config, report)
    describe_model(config, report)
    report.lines += actor_plan(config)
    return report
