"""TorchEngine: KV-cached batched sampling agrees with full forward passes of the native module."""

from __future__ import annotations

import math

import pytest
import torch

from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM, token_logprobs
from rollout.torch_engine import TorchEngine

EOS = 3


@pytest.fixture(scope="module")
def engine() -> TorchEngine:
    torch.manual_seed(0)
    model = Megrez2ForCausalLM(Megrez2Config.preset("tiny"))
    model.reset_parameters(std=0.2)  # peaked distributions, so greedy decoding is not all one token
    return TorchEngine(model, eos_token_id=EOS)


PROMPTS = [[5, 9, 17, 4], [8], [30, 31, 32, 33, 34, 35, 36]]


def full_forward_logprobs(model: Megrez2ForCausalLM, prompt: list[int], response: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(ids).logits[:, len(prompt) - 1 : -1]
    return token_logprobs(logits, ids[:, len(prompt) :])[0]


def test_greedy_decoding_matches_uncached_argmax(engine: TorchEngine) -> None:
    rollouts = engine.generate_greedy(PROMPTS, max_new_tokens=12)
    for prompt, rollout in zip(PROMPTS, rollouts, strict=True):
        sequence = list(prompt)
        with torch.no_grad():
            for _ in range(len(rollout.response_ids)):
                sequence.append(int(engine.model(torch.tensor([sequence])).logits[0, -1].argmax()))
        assert rollout.response_ids == sequence[len(prompt) :]


def test_temperature_zero_is_greedy_decoding(engine: TorchEngine) -> None:
    greedy = engine.generate_greedy(PROMPTS, max_new_tokens=12)
    for seed in (1, 2):  # the seed and top_p do not matter: argmax is always inside the nucleus
        rollouts = engine.generate(PROMPTS, n=2, max_new_tokens=12, temperature=0.0, seed=seed, top_p=0.5)
        assert [(r.prompt_index, r.sample_index) for r in rollouts] == [
            (p, s) for p in range(3) for s in (0, 1)
        ]
        assert [r.response_ids for r in rollouts] == [g.response_ids for g in greedy for _ in (0, 1)]
        assert [r.logprobs for r in rollouts] == [g.logprobs for g in greedy for _ in (0, 1)]
        assert all(math.isfinite(lp) for r in rollouts for lp in r.logprobs)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        engine.generate(PROMPTS, n=1, max_new_tokens=4, temperature=-1.0)


def test_behaviour_logprobs_are_the_policys(engine: TorchEngine) -> None:
    rollouts = engine.generate(PROMPTS, n=3, max_new_tokens=10, temperature=1.0, seed=1)
    assert [(r.prompt_index, r.sample_index) for r in rollouts] == [
        (p, s) for p in range(3) for s in range(3)
    ]
    for r in rollouts:
        assert r.prompt_ids == PROMPTS[r.prompt_index]
        expected = full_forward_logprobs(engine.model, r.prompt_ids, r.response_ids)
        assert torch.allclose(torch.tensor(r.logprobs), expected, atol=1e-4)
        stopped = r.response_ids[-1] == EOS
        assert r.finish_reason == ("stop" if stopped else "length")
        assert EOS not in r.response_ids[:-1]
        assert len(r.response_ids) == 10 or stopped


def test_temperature_changes_the_behaviour_distribution(engine: TorchEngine) -> None:
    hot = engine.generate([PROMPTS[0]], n=1, max_new_tokens=6, temperature=2.0, seed=3)[0]
    ids = torch.tensor([hot.prompt_ids + hot.response_ids])
    with torch.no_grad():
        logits = engine.model(ids).logits[:, len(hot.prompt_ids) - 1 : -1] / 2.0
    expected = token_logprobs(logits, ids[:, len(hot.prompt_ids) :])[0]
    assert torch.allclose(torch.tensor(hot.logprobs), expected, atol=1e-4)


def test_seeded_sampling_is_reproducible_and_weight_sync_changes_it(engine: TorchEngine) -> None:
    first = engine.generate(PROMPTS, n=2, max_new_tokens=8, seed=7)
    again = engine.generate(PROMPTS, n=2, max_new_tokens=8, seed=7)
    assert [r.response_ids for r in first] == [r.response_ids for r in again]
    original = {k: v.clone() for k, v in engine.model.state_dict().items()}
    perturbed = {
        k: v + 0.3 * torch.randn_like(v) if v.is_floating_point() else v for k, v in original.items()
    }
    seconds = engine.update_weights(perturbed)
    assert seconds >= 0 and engine.health()["weight_version"] == 1
    changed = engine.generate(PROMPTS, n=2, max_new_tokens=8, seed=7)
    assert [r.logprobs for r in changed] != [r.logprobs for r in first]
    engine.update_weights(original)
    restored = engine.generate(PROMPTS, n=2, max_new_tokens=8, seed=7)
    assert [r.response_ids for r in restored] == [r.response_ids for r in first]
    with pytest.raises(ValueError, match="missing"):
        engine.update_weights({"lm_head.weight": original["lm_head.weight"]})


def test_weights_cross_ray_as_shared_bytes_and_load_exactly() -> None:
    # a sync's weights travel as numpy bytes (Ray's object store hands numpy to a reader without a copy):
    # what an engine loads is bit for bit the learner's, bf16 included, and the reader gets views, not copies
    import ray

    from rlvr.cluster import ray_session
    from rollout.types import Weights

    state = {"a": torch.randn(3, 4), "b": torch.randn(5).to(torch.bfloat16), "c": torch.arange(6).view(2, 3)}
    again = Weights.of(state).tensors()
    assert all(torch.equal(again[k], v) and again[k].dtype == v.dtype for k, v in state.items())
    with ray_session(1, log_to_driver=False):
        got = ray.get(ray.put(Weights.of(state)))
        assert not got.data["a"].flags.writeable  # a view of the object store's pages, not a heap copy
        assert all(torch.equal(got.tensors()[k], v) for k, v in state.items())
