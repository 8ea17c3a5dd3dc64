"""Models rlvr trains natively.

`rlvr.model.megrez2`: the Megrez2 MoE module; `config` (hyper-parameters, presets), `attention` (GQA, RoPE,
KV cache) and `kernels` (MoE dispatch and expert matmul) beside it; `checkpoint`: I/O in the official HF
layout; `sampling`: the engines' sampling distribution, which the learner scores; `importer` / `upcycle`:
`rlvr model import`, a dense Llama upcycled into Megrez2.

The names below are imported on first use, so that `python -m rlvr.model.megrez2` (the smoke run) does not
find its own module already imported by this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlvr.model.checkpoint import CheckpointMismatchError, save_pretrained
    from rlvr.model.megrez2 import (
        PRESET_NAMES,
        CausalLMOutput,
        KVCache,
        Megrez2Config,
        Megrez2ForCausalLM,
        load_pretrained,
        parameter_counts,
        preset_config,
        token_logprobs,
    )

_EXPORTS = {
    "CheckpointMismatchError": "rlvr.model.checkpoint",
    "load_pretrained": "rlvr.model.megrez2",
    "save_pretrained": "rlvr.model.checkpoint",
    "PRESET_NAMES": "rlvr.model.megrez2",
    "CausalLMOutput": "rlvr.model.megrez2",
    "KVCache": "rlvr.model.megrez2",
    "Megrez2Config": "rlvr.model.megrez2",
    "Megrez2ForCausalLM": "rlvr.model.megrez2",
    "parameter_counts": "rlvr.model.megrez2",
    "preset_config": "rlvr.model.megrez2",
    "token_logprobs": "rlvr.model.megrez2",
}
__all__ = [
    "PRESET_NAMES",
    "CausalLMOutput",
    "CheckpointMismatchError",
    "KVCache",
    "Megrez2Config",
    "Megrez2ForCausalLM",
    "load_pretrained",
    "parameter_counts",
    "preset_config",
    "save_pretrained",
    "token_logprobs",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rlvr.model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
