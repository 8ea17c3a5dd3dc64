"""Typed recipes: YAML validated into config objects, with dotted command-line overrides.

A wrong recipe fails before anything starts, and the message names the full key path, the value, and what
is allowed (`rollout.engine: 'vlm' is not one of 'vllm', 'torch'`; `unknown key 'rollout.nn' — did you mean
'rollout.n'?`).
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rlvr.config_text import compact, describe_error


class RecipeError(ValueError):
    """A recipe or override is invalid. The message lists every problem, one per line."""


# Set (to a file path) by the test that proves every recipe key is read somewhere: each process then appends
# "Section.key" the first time code reads a key. Off (and free) otherwise.
_RECORD_READS = os.environ.get("RLVR_RECORD_CONFIG_READS")
_recorded: set[str] = set()
_validating = [0]  # reads by validators check a recipe; they are not uses


def _record_read(section: type, name: str) -> None:
    key = f"{section.__name__}.{name}"
    if key not in _recorded and not _validating[0] and _RECORD_READS:
        _recorded.add(key)
        with open(_RECORD_READS, "a") as f:
            f.write(key + "\n")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's true/false would pass as 1/0 for a number (`rollout.n=true`: one sample per prompt)."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            kinds = set(typing.get_args(annotation)) or {annotation}
            if bool not in kinds and kinds & {int, float}:
                raise ValueError(f"got {value!r}; expected a number, not a boolean")
        return value

    if _RECORD_READS:

        def __getattribute__(self, name: str) -> Any:
            cls = object.__getattribute__(self, "__class__")
            if name in cls.model_fields:
                _record_read(cls, name)
            return object.__getattribute__(self, name)

        def __init__(self, **data: Any) -> None:
            _validating[0] += 1
            try:
                super().__init__(**data)
            finally:
                _validating[0] -= 1

        def __setattr__(self, name: str, value: Any) -> None:
            _validating[0] += 1
            try:
                super().__setattr__(name, value)
            finally:
                _validating[0] -= 1

        @classmethod
        def model_validate(cls, obj: Any, **kwargs: Any) -> Any:
            _validating[0] += 1
            try:
                return super().model_validate(obj, **kwargs)
            finally:
                _validating[0] -= 1


class RunConfig(Section):
    name: str = Field("rlvr", description="run name; names the run directory and the wandb run")
    output_dir: str | None = Field(None, description="run directory; default runs/<name>")
    seed: int = Field(0, description="seeds data order, sampling and initialisation")

    @property
    def dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


class ModelConfig(Section):
    preset: Literal["tiny", "small", "megrez2-3x7b-a3b"] | None = Field(
        "tiny", description="built-in Megrez2 config, randomly initialised unless path is set"
    )
    path: str | None = Field(
        None,
        description="checkpoint directory in the official layout; wins over preset. Each learner rank and "
        "rollout worker reads it where it runs (on a multi-node cluster: a filesystem every node sees)",
    )
    tokenizer: str | None = Field(None, description="tokenizer directory; default: the checkpoint's")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="learner compute dtype: bfloat16 = bf16 autocast over fp32 master weights and AdamW "
        "state; auto = bfloat16 on GPU, float32 on CPU",
    )
    activation_checkpointing: bool = Field(
        False, description="learner recomputes each layer in backward to save activation memory"
    )

    def compute_dtype(self, device: str) -> str:
        """`dtype` with auto resolved for a learner on `device` ("cpu" or "cuda")."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if device.startswith("cuda") else "float32"

    @model_validator(mode="after")
    def _preset_or_path(self) -> ModelConfig:
        if self.preset is None and self.path is None:
            raise ValueError("set preset or path")
        return self


MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


class PromptConfig(Section):
    template: Literal["raw", "chat"] = Field(
        "raw",
        description="chat: the tokenizer's chat template (user turn, generation prompt); raw: the text as is",
    )
    system_prompt: str | None = Field(None, description="chat template only: a system turn before the prompt")
    instruction: str | None = Field(
        None,
        description="appended to every prompt on a new line (for math: 'Please reason step by step, and put "
        "your final answer within \\boxed{}.')",
    )
    instructions: dict[str, str] = Field(
        {}, description="per source: the instruction for rows of that source, instead of `instruction`"
    )

    @model_validator(mode="after")
    def _system_needs_chat(self) -> PromptConfig:
        if self.system_prompt and self.template != "chat":
            raise ValueError("system_prompt needs template: chat (a raw prompt has no system turn)")
        return self


class DataConfig(Section):
    train_files: list[str] = Field(
        min_length=1, description="prompt sets (the builder's schema), public files as published, or task://"
    )
    eval_files: list[str] = Field(
        [], description="held-out prompts (same formats) for pass@k during training"
    )
    max_prompt_tokens: int = Field(
        512,
        gt=0,
        description="prompts longer than this (in tokens, as the engine sees them) are counted and skipped",
    )
    shuffle: bool = Field(True, description="shuffle prompts each epoch (seeded by run.seed)")
    prompt: PromptConfig = Field(
        PromptConfig(), description="how a row becomes the text the model sees (training, eval, SFT)"
    )


class VerifierConfig(Section):
    name: str = Field(
        "math",
        description="verifier of rows that name none: a registered name, entry point or 'pkg.module:obj'",
    )
    workers: int = Field(
        1, ge=1, description="VerifierWorker actors; each step's answers are spread over them"
    )
    processes: int = Field(
        2,
        ge=1,
        description="processes of each VerifierPool in an actor (one pool per verifier the rows name)",
    )
    soft_timeout_s: float = Field(5.0, gt=0, description="a verification over this returns status 'timeout'")
    hard_timeout_s: float | None = Field(
        None, gt=0, description="a worker silent this long is killed and replaced; default 2 x soft + 1"
    )
    reward_correct: float = Field(1.0, description="reward for status 'ok'")
    reward_wrong: float = Field(-1.0, description="reward for every other status")
    options: dict[str, Any] = Field(
        {}, description="extra keyword arguments for verifier.name's verifier (not for rows naming another)"
    )

    @model_validator(mode="after")
    def _hard_after_soft(self) -> VerifierConfig:
        if self.hard_timeout_s is not None and self.hard_timeout_s < self.soft_timeout_s:
            raise ValueError("hard_timeout_s must be >= soft_timeout_s")
        return self


class RolloutConfig(Section):
    engine: Literal["vllm", "torch"] = Field(
        "vllm", description="rollout engine behind each RolloutWorker; torch is the native fallback"
    )
    workers: int = Field(1, ge=1, description="RolloutWorker actors")
    prompts_per_step: int = Field(8, ge=1, description="prompts sampled per RL step")
    n: int = Field(8, ge=1, description="samples per prompt (the GRPO group size)")
    temperature: float = Field(
        1.0, gt=0, description="sampling temperature (the paper: 1.0); the learner scores at it too"
    )
    top_p: float = Field(
        1.0,
        gt=0,
        le=1,
        description="nucleus sampling in both engines; the learner scores the same truncated distribution",
    )
    max_new_tokens: int = Field(256, gt=0, description="response length cap; longer responses are truncated")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="vLLM weights/activations; auto = the learner's compute dtype (model.dtype)"
    )
    max_model_len: int | None = Field(
        None, gt=0, description="vLLM context length (prompt + response); null = the model's maximum"
    )
    gpu_memory_utilization: float = Field(
        0.5, gt=0, le=1, description="vLLM's share of a GPU (the learner may share it)"
    )
    parity_probe: bool = Field(
        True, description="after a weight sync, compare learner and engine logprobs on fixed prompts"
    )
    parity_every: int = Field(
        10,
        ge=1,
        description="steps between parity probes (the first step's always; 1 = every step). Every step's "
        "update reports logprob_gap on its own rollouts anyway (old_logprobs: recompute)",
    )
    parity_prompts: int = Field(8, ge=1, description="prompts in the parity probe (from the train set)")
    capture_routing: bool = Field(
        False,
        description="engines return the experts they routed each token to, for the routing_mismatch metric; "
        "always on with algorithm.routing_replay=rollout (vLLM then runs without prefix caching)",
    )
    max_restarts: int = Field(
        3,
        ge=0,
        description="rollout/verifier worker deaths survived within restart_window_s (restart, reload, "
        "resend); one more checkpoints and stops the run",
    )
    restart_window_s: float = Field(600.0, gt=0, description="the window of max_restarts, in seconds")


class AlgorithmConfig(Section):
    advantage: str = Field(
        "grpo", description="advantage estimator from the registry (rlvr.algorithm): grpo, rloo"
    )
    advantage_scale: Literal["none", "std"] = Field("none", description="divide by the group's std or not")
    gamma: float = Field(1.0, ge=0, le=1, description="GAE discount of the outcome reward over tokens")
    lam: float = Field(
        1.0, ge=0, le=1, description="GAE lambda (1 with gamma 1: the same advantage per token)"
    )
    clip_low: float = Field(0.2, ge=0, lt=1, description="PPO ratio clip below: 1 - clip_low")
    clip_high: float = Field(0.2, ge=0, description="PPO ratio clip above: 1 + clip_high")
    kl_coef: float = Field(
        0.0, ge=0, description="KL penalty to a frozen copy of the start policy; 0 loads no reference model"
    )
    kl_estimator: Literal["k1", "k3"] = Field("k3", description="KL estimator of the penalty (Schulman)")
    ppo_epochs: int = Field(1, ge=1, description="passes over each step's rollouts")
    minibatches: int = Field(1, ge=1, description="optimizer steps per PPO epoch")
    old_logprobs: Literal["recompute", "behaviour"] = Field(
        "recompute",
        description="PPO's old policy: the learner's logprobs before the update, or the rollout engine's",
    )
    micro_batch_tokens: int = Field(
        4096,
        ge=1,
        description="packed tokens per forward/backward on a learner rank (sequences end to end, no padding)",
    )
    share_prompt: bool = Field(
        True,
        description="a group's prompt is computed once and its n responses attend to it (same loss and "
        "gradient as n copies)",
    )
    routing_replay: Literal["off", "rollout"] = Field(
        "off",
        description="Rollout Routing Replay (R3): rollout = the learner's policy forwards use the experts "
        "the rollout engine chose for each token (mixing weights from the learner's routers); off = its own",
    )
    tis_cap: float | None = Field(
        None,
        gt=0,
        description="truncated IS: weight tokens by min(π_learner / π_engine, cap); null = off",
    )
    dynamic_sampling: bool = Field(
        False,
        description="drop groups whose samples all got one reward and refill the step with fresh prompts",
    )
    max_sampling_rounds: int = Field(
        4,
        ge=1,
        description="dynamic sampling: generation rounds per step at most (then train on what is kept)",
    )

    @field_validator("advantage")
    @classmethod
    def _known_advantage(cls, value: str) -> str:
        from rlvr.algorithm import ADVANTAGES  # on use: torch is heavy for the commands that need no model

        if value not in ADVANTAGES:
            close = difflib.get_close_matches(value, list(ADVANTAGES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, ADVANTAGES))}{hint}")
        return value


Beta = Annotated[float, Field(ge=0, lt=1)]


class OptimConfig(Section):
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate")
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="AdamW betas, each in [0, 1)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps")
    grad_clip: float = Field(1.0, gt=0, description="max global grad norm")


class SFTConfig(Section):
    """Supervised fine-tuning before RL, as the Megrez2 report does it (§4.2.1): samples packed into rows of
    `seq_len` (mutually invisible, positions reset), a turn-level loss, epochs, cosine schedule."""

    epochs: float = Field(
        0, ge=0, description="passes over the SFT data (the report: 2); 0 with steps 0 skips SFT"
    )
    steps: int = Field(
        0, ge=0, description="optimiser steps; with epochs > 0 a cap on them; 0 with epochs 0 skips SFT"
    )
    data: str = Field(
        "task://arithmetic?n=20000&seed=7",
        description="conversations (JSON Lines of {messages: [...]}) or a prompt set with worked solutions",
    )
    batch_tokens: int = Field(
        8192,
        ge=1,
        description="tokens per optimiser step: batch_tokens // seq_len packed rows (at least one)",
    )
    seq_len: int = Field(2048, ge=2, description="tokens per packed row; a longer sample is `overlong`")
    packing: bool = Field(True, description="several samples per row (best fit); false: one sample a row")
    loss: Literal["turn", "token"] = Field(
        "turn",
        description="turn: each assistant turn's token mean, then the mean over turns; token: token mean",
    )
    overlong: Literal["drop", "truncate"] = Field("drop", description="a sample longer than seq_len")
    micro_batch_tokens: int = Field(4096, ge=1, description="row tokens per forward/backward")
    lr: float = Field(3e-3, gt=0, description="AdamW peak learning rate")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine schedule's final lr / peak lr")
    warmup_steps: int = Field(20, ge=0, description="linear warm-up steps")
    betas: tuple[Beta, Beta] = Field((0.9, 0.95), description="AdamW betas, each in [0, 1)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="max global grad norm")
    heldout: int = Field(0, ge=0, description="samples held out of sft.data for the held-out SFT loss")
    eval_every: int = Field(
        0, ge=0, description="held-out SFT loss every k steps (and at the end); 0: end only"
    )
    save_every: int = Field(0, ge=0, description="checkpoint every k steps for resume; 0: only the result")
    log_every: int = Field(50, ge=1, description="SFT log interval in steps")

    @property
    def enabled(self) -> bool:
        return self.epochs > 0 or self.steps > 0


class TrainerConfig(Section):
    steps: int = Field(100, ge=1, description="RL steps")
    save_every: int = Field(50, ge=1, description="checkpoint every k steps")
    eval_every: int = Field(
        0, ge=0, description="held-out eval (data.eval_files) every k steps, plus before and after RL; 0: off"
    )
    eval_k: int = Field(4, ge=1, description="samples per held-out prompt (pass@1 and pass@k at T=1.0)")
    resume: Literal["auto", "never"] = Field("auto", description="auto: continue from the newest checkpoint")
    keep_last: int = Field(
        3,
        ge=0,
        description="checkpoints kept: older ones are deleted once a new one is complete; 0 keeps all",
    )
    dump_every: int = Field(
        10,
        ge=0,
        description="every k steps, write a few groups' prompts, responses and rewards (rlvr show); 0: off",
    )
    dump_groups: int = Field(4, ge=1, description="groups per sample dump")
    on_data_change: Literal["error", "new_epoch"] = Field(
        "error",
        description="resuming over a changed prompt set: error stops; new_epoch starts a fresh epoch of it",
    )
    wandb: bool = Field(
        True, description="log to wandb (offline unless WANDB_MODE/WANDB_API_KEY say otherwise)"
    )


class ResourcesConfig(Section):
    learner_workers: int = Field(1, ge=1, description="data-parallel learner ranks")
    fsdp: bool = Field(
        False, description="shard weights, grads and AdamW state over the learner ranks (FSDP2 fully_shard)"
    )
    gpus_per_learner: float = Field(0, ge=0, description="GPUs per learner rank; 0 runs on CPU")
    gpus_per_rollout_worker: float = Field(0, ge=0, description="GPUs per rollout worker; 0 runs on CPU")
    cpus_per_verifier_worker: float = Field(1, gt=0, description="CPUs reserved per VerifierWorker actor")
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="torch threads of each learner rank and rollout worker; default: the node's cores split "
        "between the actors of a phase (rollout.workers, learner_workers), as the phases take turns",
    )


class RecipeConfig(Section):
    run: RunConfig = RunConfig()
    model: ModelConfig = ModelConfig()
    data: DataConfig
    verifier: VerifierConfig = VerifierConfig()
    rollout: RolloutConfig = RolloutConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    optim: OptimConfig = OptimConfig()
    sft: SFTConfig = SFTConfig()
    trainer: TrainerConfig = TrainerConfig()
    resources: ResourcesConfig = ResourcesConfig()

    @model_validator(mode="after")
    def _the_step_fits(self) -> RecipeConfig:
        """What each field allows alone but the step cannot run with together."""
        n, sequences = self.rollout.n, self.rollout.prompts_per_step * self.rollout.n
        ranks = self.resources.learner_workers
        if n < 2:
            raise ValueError(
                f"rollout.n={n}: a group baseline (algorithm.advantage {self.algorithm.advantage!r}) needs "
                "at least 2 samples per prompt; with one, every advantage is 0 and nothing is learned"
            )
        if ranks > sequences:
            raise ValueError(
                f"resources.learner_workers={ranks} is more than the {sequences} sequences of a step "
                "(rollout.prompts_per_step x rollout.n): a rank would get none"
            )
        if self.resources.fsdp and ranks > 1 and sequences % ranks:
            raise ValueError(
                f"resources.fsdp with learner_workers={ranks} needs the {sequences} sequences of a step "
                "(rollout.prompts_per_step x rollout.n) to divide evenly: FSDP ranks step in lockstep"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, directory: str | Path) -> Path:
        """Write the resolved config as `config.yaml` into `directory` (the run's outputs live beside it)."""
        path = Path(directory) / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml())
        return path

    def summary(self) -> str:
        """The resolved config, one line per section."""
        lines = []
        for section, values in self.to_dict().items():
            fields = " ".join(f"{k}={compact(v)}" for k, v in values.items())
            lines.append(f"{section + ':':<11}{fields}")
        return "\n".join(lines)


# ---------------------------------------------------------------- loading and overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """`rollout.n=8` -> (["rollout", "n"], 8). The value is read as YAML, so `true`, `[1, 2]`, `null`
    work; text YAML would read as a block mapping (`instruction=Answer:`) stays text (write `{a: 1}`)."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"override {text!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise RecipeError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    if isinstance(value, dict) and not raw.lstrip().startswith("{"):
        value = raw
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise RecipeError(f"override {text!r}: {where!r} is a value ({child!r}), not a section")
            node = child
        node[path[-1]] = value
    return raw


def load_recipe(path: str | Path, overrides: Sequence[str] = (), schema: type[Any] | None = None) -> Any:
    """Read a YAML recipe, apply `key.path=value` overrides, and validate it into a `RecipeConfig` (or the
    given schema, e.g. the dataset builder's)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {str(path)!r} must be a mapping of sections, got {type(raw).__name__}")
    return validate_recipe(apply_overrides(raw, overrides), source=str(path), schema=schema)


def validate_recipe(raw: dict[str, Any], source: str = "recipe", schema: type[Any] | None = None) -> Any:
    schema = schema or RecipeConfig
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        problems = [describe_error(schema, err) for err in exc.errors()]
        raise RecipeError(f"{source}: {len(problems)} problem(s)\n  " + "\n  ".join(problems)) from None
