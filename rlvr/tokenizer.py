"""Tokenizers: a built-in character tokenizer for the CPU presets, or a Hugging Face tokenizer from a folder.

The character tokenizer needs no download: printable ASCII plus pad/bos/eos/unk, 99 ids, which fits the
`tiny` preset's 256-entry vocabulary. Real checkpoints bring their own tokenizer files.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any, Protocol

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


class Tokenizer(Protocol):
    pad_token_id: int
    eos_token_id: int
    stop_token_ids: list[int]  # generation stops at any of these (EOS first)

    def encode(self, text: str, add_bos: bool = True) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class CharTokenizer:
    """One id per printable ASCII character; anything else maps to <unk>. Prompts start with <bos>."""

    chat_template = None

    def __init__(self, alphabet: str = string.printable[:95] + "\n") -> None:
        self.alphabet = alphabet
        self.vocab = list(SPECIALS) + list(dict.fromkeys(alphabet))
        self.index = {token: i for i, token in enumerate(self.vocab)}
        self.pad_token_id, self.bos_token_id, self.eos_token_id, self.unk_token_id = range(len(SPECIALS))
        self.stop_token_ids = [self.eos_token_id]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        ids = [self.index.get(ch, self.unk_token_id) for ch in text]
        return [self.bos_token_id, *ids] if add_bos else ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocab[i] for i in ids if i >= len(SPECIALS) and i < len(self.vocab))

    def save(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "rlvr_tokenizer.json").write_text(
            json.dumps({"type": "char", "alphabet": self.alphabet})
        )


# Tokens that end an assistant turn in common chat templates (ChatML, Llama 3, Phi, Gemma): generation stops
# at any of them that the vocabulary holds, as well as at EOS.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


class HFTokenizer:
    """A Hugging Face tokenizer loaded from a local folder (never from the hub), with its chat template."""

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoTokenizer

        self.inner: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.eos_token_id = int(self.inner.eos_token_id)
        self.pad_token_id = int(
            self.inner.pad_token_id if self.inner.pad_token_id is not None else self.eos_token_id
        )
        self.chat_template: str | None = self.inner.chat_template
        vocab = self.inner.get_vocab()
        added = self.inner.added_tokens_decoder.values()
        special = {t.content for t in added if t.special} | set(self.inner.all_special_tokens)
        ends = [vocab[t] for t in END_OF_TURN if t in vocab and t in special]
        self.stop_token_ids = list(dict.fromkeys([self.eos_token_id, *ends]))  # EOS first, no repeats

    def chat_ids(self, turns: list[dict[str, str]]) -> list[int]:
        """Token ids of `turns` through the chat template, ending with the assistant's generation prompt."""
        ids = self.inner.apply_chat_template(turns, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)  # a BatchEncoding in transformers 5

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        return list(self.inner.encode(text, add_special_tokens=add_bos))

    def decode(self, ids: list[int]) -> str:
        return str(self.inner.decode(ids, skip_special_tokens=True))

    def save(self, folder: str | Path) -> None:
        """The tokenizer files (and chat template) into `folder`, beside a checkpoint."""
        self.inner.save_pretrained(str(folder))


def load_tokenizer(folder: str | Path | None) -> CharTokenizer | HFTokenizer:
    """The tokenizer saved in `folder` (rlvr's own or Hugging Face's); None: the character tokenizer."""
    if folder is None:
        return CharTokenizer()
    own = Path(folder) / "rlvr_tokenizer.json"
    if own.exists():
        spec = json.loads(own.read_text())
        return CharTokenizer(spec["alphabet"])
    if not any((Path(folder) / name).exists() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise FileNotFoundError(
            f"no tokenizer in {folder}: set model.tokenizer, or save one beside the model"
        )
    return HFTokenizer(folder)
