"""A tied output head (`tie_word_embeddings`): `lm_head.weight` and `model.embed_tokens.weight` are one
tensor.

Weights that carry both names with different values cannot be loaded into a tied model: the shared tensor
would silently end up holding whichever came last. Every load of a full state dict into a tied model goes
through `check_tied_head` first: the native model's `load_state_dict` (so the torch engine's weight sync and
`from_state_dict`), the vLLM engine's `update_weights` and its model's `load_weights`. Equal tensors, or only
one of the two names, are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

HEAD = "lm_head.weight"
EMBEDDING = "model.embed_tokens.weight"


def check_tied_head(state: Mapping[str, Any], prefix: str = "") -> None:
    """Raises ValueError when `state` holds both `lm_head.weight` and `model.embed_tokens.weight` (under
    `prefix`) and they differ, naming both and how far apart they are; returns when they are equal or when
    one of them is absent."""
    head, embedding = state.get(prefix + HEAD), state.get(prefix + EMBEDDING)
    if head is None or embedding is None:
        return
    problem = _difference(head, embedding)
    if problem is not None:
        raise ValueError(
            f"weight sync into a model with tie_word_embeddings: {prefix + HEAD} and {prefix + EMBEDDING} "
            f"must be one tensor, but they differ ({problem}); sync the embedding only, or equal tensors"
        )


def _difference(head: Tensor, embedding: Tensor) -> str | None:
    """How `head` and `embedding` differ (shape, or how many elements and the max abs difference), None if
    they are equal (NaNs in the same places count as equal)."""
    if tuple(head.shape) != tuple(embedding.shape):
        return f"shapes {list(head.shape)} and {list(embedding.shape)}"
    if _same_storage(head, embedding):
        return None
    wide = torch.float64 if torch.float64 in (head.dtype, embedding.dtype) else torch.float32
    if head.dtype == embedding.dtype and torch.equal(head, embedding.to(head.device)):
        return None
    head, embedding = head.to(wide), embedding.to(head.device, wide)
    differ = (head != embedding) & ~(head.isnan() & embedding.isnan())
    count = int(differ.sum())
    if count == 0:
        return None
    largest = float((head - embedding).abs()[differ].max())
    return f"{count} of {head.numel()} elements, max abs diff {largest:.6g}"


def _same_storage(a: Tensor, b: Tensor) -> bool:
    return (
        a.device == b.device
        and a.dtype == b.dtype
        and a.stride() == b.stride()
        and a.storage_offset() == b.storage_offset()
        and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    )


def check_tied_load(module: Any, state_dict: Mapping[str, Any], prefix: str, *_: Any) -> None:
    """A `load_state_dict` pre-hook for a model with a `config.tie_word_embeddings` flag."""
    if module.config.tie_word_embeddings:
        check_tied_head(state_dict, prefix)
