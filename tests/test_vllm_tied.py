"""vLLM with a tied output head (an imported chat model such as SmolLM2 ties it to the embedding): after a
weight sync the engine must compute logits with the new embedding, not the one it loaded at start. In a module
of its own: its engine is torn down at the end, which would take the process-wide groups from a shared one."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rollout.vllm_engine import VLLMEngine
from tests.test_vllm_engine import EOS, assert_parity, perturbed, random_model


@pytest.mark.slow
def test_update_weights_with_tied_embeddings_moves_the_output_head_too(tmp_path: Path) -> None:
    """An imported chat model (SmolLM2) ties its output head to the embedding: after a sync the engine must
    compute logits with the new embedding, not the one it loaded at start."""
    model = random_model(Megrez2Config.preset("tiny", tie_word_embeddings=True), seed=3)
    model.save_pretrained(tmp_path / "tied")
    engine = VLLMEngine(tmp_path / "tied", EOS, dtype="float32", seed=0)
    assert_parity(engine, model)
    moved = Megrez2ForCausalLM(model.config)
    state = perturbed(model.state_dict(), seed=4)
    state["lm_head.weight"] = state["model.embed_tokens.weight"]  # one tensor: a differing head is refused
    moved.load_state_dict(state)
    assert moved.lm_head.weight is moved.model.embed_tokens.weight
    engine.update_weights(moved.state_dict())
    assert_parity(engine, moved.eval())
