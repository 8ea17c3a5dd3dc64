"""vLLM plugin: teaches vLLM and transformers the Megrez2 architecture.

Installed as the `vllm.general_plugins` entry point `megrez2` (pyproject.toml), so every vLLM process (the
engine core of a multi-process engine too) runs `register()` at start-up. Calling it by hand is harmless: it
does nothing the second time.
"""

from __future__ import annotations

import contextlib
from dataclasses import fields
from typing import Any

from transformers import PretrainedConfig

from rlvr.model.config import RUNTIME_FIELDS, Megrez2Config

ARCHITECTURE = "MegrezMoeForCausalLM"
MODEL_CLASS = "rollout.vllm_megrez2:MegrezMoeForCausalLM"
# config attribute (set through vLLM's hf_overrides) that makes the model record each token's experts (R3)
CAPTURE_ROUTES = "rlvr_capture_routes"

_NATIVE_FIELDS = [
    f.name
    for f in fields(Megrez2Config)
    if f.name not in ("extra", "architectures", "model_type", "torch_dtype", *RUNTIME_FIELDS)
]


class MegrezMoeConfig(PretrainedConfig):
    """`config.json` of model_type "megrez_moe" for transformers and vLLM. Defaults and validation are the
    native `Megrez2Config`'s, so a config either engine accepts means the same model in both."""

    model_type = "megrez_moe"

    def __init__(self, **kwargs: Any) -> None:
        native = Megrez2Config.from_dict({k: v for k, v in kwargs.items() if k in _NATIVE_FIELDS})
        rest = {k: v for k, v in kwargs.items() if k not in _NATIVE_FIELDS}
        super().__init__(tie_word_embeddings=native.tie_word_embeddings, **rest)
        for name in _NATIVE_FIELDS:
            setattr(self, name, getattr(native, name))
        self.rope_parameters = {"rope_type": "default", "rope_theta": native.rope_theta}


def native_config(config: PretrainedConfig) -> Megrez2Config:
    """The native config of a `MegrezMoeConfig` (what `rlvr.model` builds from the same config.json)."""
    return Megrez2Config.from_dict({name: getattr(config, name) for name in _NATIVE_FIELDS})


def register() -> None:
    """Registers the config class with transformers and the model class (lazily, by name) with vLLM."""
    from transformers import AutoConfig
    from vllm import ModelRegistry

    with contextlib.suppress(ValueError):  # registered already (plugins may run more than once per process)
        AutoConfig.register(MegrezMoeConfig.model_type, MegrezMoeConfig)
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)
