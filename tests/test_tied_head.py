"""A weight sync into a model with `tie_word_embeddings` whose `lm_head.weight` differs from its embedding is
refused (`rlvr.model.tied`): the shared tensor would silently hold one of the two."""

from __future__ import annotations

import pytest
import torch

from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rlvr.model.tied import EMBEDDING, HEAD, check_tied_head
from rollout.torch_engine import TorchEngine
from rollout.types import Weights, state_of


def test_equal_tensors_or_one_name_are_accepted() -> None:
    table = torch.randn(7, 4)
    check_tied_head({HEAD: table, EMBEDDING: table})  # one tensor under both names (a tied state_dict())
    check_tied_head({HEAD: table.clone(), EMBEDDING: table.clone()})  # equal copies (after Ray)
    check_tied_head({HEAD: table.to(torch.float64), EMBEDDING: table})  # equal values in other dtypes
    check_tied_head({EMBEDDING: table})
    check_tied_head({HEAD: table})
    check_tied_head({})
    nan = table.clone()
    nan[0, 0] = float("nan")
    check_tied_head({HEAD: nan, EMBEDDING: nan.clone()})  # NaNs in the same places are no difference
    check_tied_head(state_of(Weights.of({HEAD: table, EMBEDDING: table})))


def test_different_tensors_are_refused_with_both_names_and_the_gap() -> None:
    table = torch.zeros(7, 4)
    head = table.clone()
    head[2, 3] = 0.25
    head[5, 0] = -1.5
    with pytest.raises(ValueError) as refused:
        check_tied_head({HEAD: head, EMBEDDING: table})
    message = str(refused.value)
    assert HEAD in message and EMBEDDING in message
    assert "2 of 28 elements" in message and "max abs diff 1.5" in message
    with pytest.raises(ValueError, match="shapes"):
        check_tied_head({HEAD: torch.zeros(7, 4), EMBEDDING: torch.zeros(8, 4)})
    with pytest.raises(ValueError, match="max abs diff"):  # bf16 against fp32
        check_tied_head({HEAD: head.to(torch.bfloat16), EMBEDDING: table})
    with pytest.raises(ValueError, match=r"module\.lm_head\.weight"):
        check_tied_head({"module." + HEAD: head, "module." + EMBEDDING: table}, prefix="module.")
    with pytest.raises(ValueError, match=HEAD):  # as the sync carries them across Ray
        check_tied_head(state_of(Weights.of({HEAD: head, EMBEDDING: table})))


def _tied_engine() -> TorchEngine:
    torch.manual_seed(0)
    model = Megrez2ForCausalLM(Megrez2Config.preset("tiny", tie_word_embeddings=True))
    return TorchEngine(model, eos_token_id=3)


def test_the_torch_engine_refuses_an_untied_sync_and_keeps_its_weights() -> None:
    engine = _tied_engine()
    original = {name: tensor.clone() for name, tensor in engine.model.state_dict().items()}
    state = {name: t + 0.1 if t.is_floating_point() else t for name, t in original.items()}
    state[HEAD] = state[EMBEDDING].clone()
    state[HEAD][4, 1] += 0.5  # both names present, one element apart
    with pytest.raises(ValueError, match=r"differ \(1 of \d+ elements, max abs diff 0\.5\)"):
        engine.update_weights(state)
    assert engine.health()["weight_version"] == 0
    for name, tensor in engine.model.state_dict().items():  # refused before anything was copied
        assert torch.equal(tensor, original[name]), name
    state[HEAD] = state[EMBEDDING].clone()  # equal copies load, and the head stays the embedding
    engine.update_weights(state)
    assert engine.health()["weight_version"] == 1
    assert engine.model.lm_head.weight is engine.model.model.embed_tokens.weight
    assert torch.equal(engine.model.lm_head.weight, state[EMBEDDING])
    engine.update_weights(state_of(Weights.of(engine.model.state_dict())))  # a learner's tied state, via Ray


def test_an_untied_model_loads_a_head_of_its_own() -> None:
    model = Megrez2ForCausalLM(Megrez2Config.preset("tiny", tie_word_embeddings=False))
    state = model.state_dict()
    state[HEAD] = state[EMBEDDING] + 1.0
    TorchEngine(model, eos_token_id=3).update_weights(state)
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight + 1.0)


def test_building_a_tied_model_from_a_state_is_checked_too() -> None:
    model = _tied_engine().model
    state = dict(model.state_dict())
    state[HEAD] = state[EMBEDDING] * 2
    with pytest.raises(ValueError, match=EMBEDDING):
        Megrez2ForCausalLM.from_state_dict(model.config, state)
