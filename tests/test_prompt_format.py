"""Prompts as chat models need them: the chat template or raw text, an instruction per task, and generation
that stops at every end token the template uses, in both engines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlvr.config import MATH_INSTRUCTION, PromptConfig
from rlvr.data import PromptRow
from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rlvr.sampler import PromptFormat
from rlvr.tokenizer import CharTokenizer, HFTokenizer, load_tokenizer
from rollout.torch_engine import TorchEngine

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> HFTokenizer:
    """A small byte-level BPE tokenizer with ChatML specials and template, built here (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    inner = Tokenizer(models.BPE())
    inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    inner.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()  # every byte, so any text round-trips
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    inner.train_from_iterator(
        ["What is 2+2? Please reason step by step, and put your answer in a box."], trainer
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=inner, eos_token="<|endoftext|>", pad_token="<|endoftext|>", chat_template=CHATML
    )
    folder = tmp_path_factory.mktemp("chat-tokenizer")
    fast.save_pretrained(folder)
    tokenizer = load_tokenizer(folder)
    assert isinstance(tokenizer, HFTokenizer)
    return tokenizer


ROW = PromptRow("1", "What is 2+2?", "4", source="gsm8k")


def test_raw_and_chat_formats_and_instructions(chat_tokenizer: HFTokenizer) -> None:
    raw = PromptFormat(chat_tokenizer, PromptConfig(instruction=MATH_INSTRUCTION))
    assert raw.text(ROW) == "What is 2+2?\n" + MATH_INSTRUCTION
    assert chat_tokenizer.inner.decode(raw.ids(ROW)) == raw.text(ROW)
    chat = PromptFormat(
        chat_tokenizer,
        PromptConfig(
            template="chat", system_prompt="Be brief.", instructions={"gsm8k": "Answer with a number."}
        ),
    )
    text = chat_tokenizer.inner.decode(chat.ids(ROW))
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?\nAnswer with a number."
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    other = PromptRow("2", "x?", "1", source="math")
    assert chat.text(other) == "x?"  # no per-source instruction and no default one
    with pytest.raises(ValueError, match="has no chat template"):
        PromptFormat(CharTokenizer(), PromptConfig(template="chat"))


def test_stop_tokens_are_eos_and_the_end_of_turn_and_decoding_drops_specials(
    chat_tokenizer: HFTokenizer,
) -> None:
    vocab = chat_tokenizer.inner.get_vocab()
    assert chat_tokenizer.stop_token_ids == [vocab["<|endoftext|>"], vocab["<|im_end|>"]]
    ids = chat_tokenizer.encode("4", add_bos=False) + [vocab["<|im_end|>"]]
    assert chat_tokenizer.decode(ids) == "4"
    assert CharTokenizer().stop_token_ids == [CharTokenizer().eos_token_id]


def test_the_torch_engine_stops_at_any_stop_token(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Megrez2ForCausalLM(Megrez2Config.preset("tiny"))
    model.reset_parameters(std=0.2)
    prompts = [[5, 6, 7], [9, 10, 11, 12]]
    free = TorchEngine(model, eos_token_id=[-1]).generate_greedy(prompts, 6)  # never stops
    assert all(r.finish_reason == "length" and len(r.response_ids) == 6 for r in free)
    second = [r.response_ids[1] for r in free]  # make each prompt's second greedy token a stop token
    stopped = TorchEngine(model, eos_token_id=[3, *second]).generate_greedy(prompts, 6)
    for r, before in zip(stopped, free, strict=True):
        cut = next(i for i, t in enumerate(before.response_ids) if t in (3, *second)) + 1
        assert r.response_ids == before.response_ids[:cut] and r.finish_reason == "stop"
