"""Small dense Llama-family sources built locally (no download) for the model-import tests."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_LLAMA = {
    "vocab_size": 128,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 7,  # 1 dense + 2 groups of 3
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 50000.0,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}


def chatml_tokenizer() -> Any:
    """A character-level tokenizer with ChatML specials and chat template (ids 0-2 are the specials)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + list(dict.fromkeys(string.printable)))}
    inner = Tokenizer(models.WordLevel(vocab, unk_token=SPECIALS[0]))
    inner.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    inner.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=inner, bos_token=SPECIALS[1], eos_token=SPECIALS[2], unk_token=SPECIALS[0]
    )
    tokenizer.pad_token = SPECIALS[2]
    tokenizer.chat_template = CHATML
    return tokenizer


def llama_folder(path: Path, seed: int = 0, tokenizer: bool = True, **overrides: Any) -> Path:
    """A randomly initialised LlamaForCausalLM (TINY_LLAMA with overrides) saved as a Hugging Face folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY_LLAMA, **overrides}))
    with torch.no_grad():  # norms away from 1, so a dropped or swapped norm shows in the logits
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    model.save_pretrained(path)
    if tokenizer:
        chatml_tokenizer().save_pretrained(path)
    return path


def config_folder(path: Path, config: Any) -> Path:
    """A folder holding only a config.json (enough for the refusals, which come before any weights)."""
    config.save_pretrained(path)
    return path
