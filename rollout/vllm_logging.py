"""vLLM's console output in rlvr's rollout workers: warnings and errors only (unless `VLLM_LOGGING_LEVEL` asks
for more), without the warnings below, each checked to be benign for how rlvr runs vLLM.

A user reads a traceback on every start or a "Failed to load weights" on every sync as a failure; these are
not, and the parity probe after each sync measures what would show if one were.
"""

from __future__ import annotations

import logging
import os
import warnings

# logger (vLLM module) -> messages from it that are benign in rlvr, with why
BENIGN = {
    # rlvr tokenizes and detokenizes itself (`skip_tokenizer_init=True`): vLLM's start-up warm-up of chat
    # templating has no tokenizer to render with, logs the ValueError with a traceback, and skips the warm-up;
    # for the same reason vLLM has no EOS id of its own, and every request carries rlvr's stop token ids.
    "vllm.renderers.base": (
        "Chat template warmup failed",
        "Using None for EOS token id because tokenizer is not initialized",
    ),
    # In-place reload (`reload_weights`): the rotary embedding's cos/sin cache is a buffer computed from the
    # config and never stored in a checkpoint, so nothing is loaded into it and vLLM puts the computed cache
    # back. The weights that are in the checkpoint all load (a missing one raises in `load_weights`).
    "vllm.model_executor.model_loader.reload.layerwise": ("RotaryEmbedding: Failed to load weights",),
    # Chunked prefill is off on purpose (a seeded request split over steps rewinds its CPU generator); the
    # engine runs in the rollout worker's own process, whose global RNG only vLLM uses.
    "vllm.engine.arg_utils": (
        "does not officially support disabling chunked prefill",
        "The global random seed is set to",
    ),
    # Eager mode is chosen on purpose (no compile step per engine start; weights reload in place).
    "vllm.config.vllm": ("Enforce eager set", "Inductor compilation was disabled", "requires Triton"),
    # vLLM's CPU build runs without Triton (its CUDA-only wheels are not installed) and Megrez2 has no SSM.
    "vllm.platforms.cpu": ("Triton is not installed", "Reset SSM cache type"),
    "torch._library.triton": ("Triton not available",),
    # vLLM's CPU worker pins its threads at start; its later `torch.set_num_threads` calls are no-ops.
    "vllm.v1.worker.cpu_worker": ("after the thread binding",),
}


class _DropBenign(logging.Filter):
    def __init__(self, messages: tuple[str, ...]) -> None:
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.messages)


def quiet_vllm(default_level: str = "WARNING") -> None:
    """Call before the engine starts in a process: vLLM logs at `default_level` unless the user set
    `VLLM_LOGGING_LEVEL`, and the benign warnings above are dropped where they are logged (vLLM configures
    its handlers only when an engine starts, so the filters sit on the emitting loggers, not a handler)."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", default_level)
    # vLLM's Triton dispatcher touches a deprecated torch alias while probing kernels (nothing rlvr calls)
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.reduce_op", category=FutureWarning)
    for name, messages in BENIGN.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropBenign) for f in logger.filters):
            logger.addFilter(_DropBenign(messages))
