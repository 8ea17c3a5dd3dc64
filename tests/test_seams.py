"""Where the parts meet: builder → trainer → eval on one prompt format, every recipe key read or refused,
seed streams, the learner scoring the engine's distribution, resume guards, rewards that cannot poison a
step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

from rlvr.batch import make_batch
from rlvr.config import RecipeConfig, RecipeError, load_recipe
from rlvr.data import PromptRow, fingerprint, read_prompt_file
from rlvr.learner import Learner, LearnerSpec
from rlvr.model.megrez2 import Megrez2Config
from rlvr.sampler import Sampler, SamplingSettings
from rlvr.seeds import derive_seed, prompt_seeds, sample_seed
from rlvr.trainer import check_same_prompts, latest_checkpoint
from rollout.torch_engine import TorchEngine
from verifiers.routing import VerifierRouter

REPO = Path(__file__).resolve().parents[1]
RLVR = str(Path(sys.executable).with_name("rlvr"))
# Keys whose non-default values are refused at load (none today: every key is implemented). A key listed here
# must fail `load_recipe` with an error naming it when set to the value beside it.
REFUSED: dict[str, object] = {}


def schema_keys(model: type[BaseModel] = RecipeConfig, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, "Section.field") for every leaf field of the recipe schema."""
    keys = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = [a for a in typing.get_args(annotation) if isinstance(a, type)] or [annotation]
        nested = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is not None:
            keys += schema_keys(nested, f"{prefix}{name}.")
        else:
            keys.append((f"{prefix}{name}", f"{model.__name__}.{name}"))
    return keys


def _rlvr(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [RLVR, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


@pytest.mark.slow
def test_every_recipe_key_is_read_or_refused(tmp_path: Path) -> None:
    """Every key of the training recipe is read by the code that runs a recipe with every feature on (SFT
    warm start, held-out eval, KL penalty, top-p, TIS, RLOO with GAE(γ, λ) < 1, routing replay, bf16,
    activation checkpointing, wandb, a resume), in the driver or in an actor; keys that are not are in
    REFUSED."""
    reads = tmp_path / "reads.txt"
    env = {**os.environ, "RLVR_RECORD_CONFIG_READS": str(reads), "WANDB_MODE": "offline"}
    everything = [
        f"run.output_dir={tmp_path / 'run'}",
        "sft.steps=2",
        "sft.batch_tokens=120",
        "sft.heldout=4",
        "sft.eval_every=1",
        "sft.save_every=1",
        "sft.log_every=1",
        "sft.data=task://arithmetic?n=50&seed=7",
        'data.train_files=["task://arithmetic?n=40&seed=1"]',
        'data.eval_files=["task://arithmetic?n=4&seed=9"]',
        "trainer.eval_every=1",
        "trainer.eval_k=2",
        "trainer.steps=1",
        "trainer.wandb=true",
        "rollout.prompts_per_step=2",
        "rollout.n=2",
        "rollout.max_new_tokens=8",
        "rollout.temperature=0.9",
        "rollout.top_p=0.95",
        "rollout.parity_prompts=2",
        "algorithm.advantage=rloo",
        "algorithm.advantage_scale=std",
        "algorithm.gamma=0.99",
        "algorithm.lam=0.95",
        "algorithm.kl_coef=0.01",
        "algorithm.tis_cap=2.0",
        "algorithm.routing_replay=rollout",
        "model.dtype=bfloat16",
        "model.activation_checkpointing=true",
        "verifier.workers=1",
        "verifier.options={}",
        "trainer.dump_every=1",
        "data.prompt.instruction=Answer:",
    ]
    _rlvr("train", "recipes/tiny.yaml", *everything, env=env)
    _rlvr("train", "recipes/tiny.yaml", *everything, "trainer.steps=2", env=env)  # resumes at step 2
    read = set(reads.read_text().split())
    unread = [key for key, field in schema_keys() if field not in read and key not in REFUSED]
    assert not unread, f"recipe keys nothing reads (implement or refuse them): {unread}"
    for key, value in REFUSED.items():
        with pytest.raises(RecipeError, match=key):
            load_recipe(REPO / "recipes/tiny.yaml", [f"{key}={value}"])
    metrics = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]  # resumed
    assert "kl_ref" in metrics[0] and metrics[0]["kl_ref"] >= 0  # the KL penalty to the reference ran
    assert 0 <= metrics[0]["routing_mismatch"] <= 1  # the engine captured routing and the learner replayed


def test_seed_streams_never_overlap() -> None:
    """No two (step, prompt, sample) triples share a stream, within or across steps, workers and purposes."""
    seeds = {
        sample_seed(p, s)
        for step in range(50)
        for p in prompt_seeds(7, "rollout", step, 32)
        for s in range(16)
    }
    assert len(seeds) == 50 * 32 * 16
    # the old scheme's overlap: step t+1's sample s was step t's sample s+1
    assert sample_seed(prompt_seeds(7, "rollout", 1, 1)[0], 0) != sample_seed(
        prompt_seeds(7, "rollout", 0, 1)[0], 1
    )
    assert prompt_seeds(7, "eval", 0, 4) != prompt_seeds(7, "rollout", 0, 4)
    assert derive_seed(7, "rollout", 3, 2) == derive_seed(7, "rollout", 3, 2)  # reproducible
    with pytest.raises(ValueError, match="unknown seed purpose"):
        derive_seed(7, "rolout", 1)


def _tiny_engine() -> TorchEngine:
    torch.manual_seed(0)
    learner = Learner(LearnerSpec.create(Megrez2Config.preset("tiny")))
    learner.model.reset_parameters(std=0.2)  # peaked, so top-p truncates something
    return TorchEngine(learner.model, eos_token_id=3)


def test_a_prompts_samples_do_not_depend_on_how_the_batch_is_split() -> None:
    engine = _tiny_engine()
    prompts = [[5, 6, 7], [9, 10], [11, 12, 13]]
    seeds = prompt_seeds(0, "rollout", 4, 3)
    whole = engine.generate(prompts, 2, 8, 1.0, seeds)
    halves = engine.generate(prompts[:1], 2, 8, 1.0, seeds[:1]) + engine.generate(
        prompts[1:], 2, 8, 1.0, seeds[1:]
    )
    assert [r.response_ids for r in whole] == [r.response_ids for r in halves]


@pytest.mark.parametrize(("temperature", "top_p"), [(0.7, 1.0), (0.7, 0.8), (1.0, 0.9)])
def test_the_learner_scores_the_distribution_the_engine_sampled(temperature: float, top_p: float) -> None:
    """At T ≠ 1 and/or top-p < 1 the learner's log-probs of the sampled tokens equal the engine's, so PPO's
    ratio, TIS and the logprob gap compare like with like (they did not when the learner scored at T = 1)."""
    engine = _tiny_engine()
    rollouts = engine.generate([[5, 6, 7], [9, 10]], 4, 10, temperature, seed=1, top_p=top_p)
    spec = LearnerSpec.create(
        Megrez2Config.preset("tiny"), rollout={"temperature": temperature, "top_p": top_p}
    )
    learner = Learner(spec, initial_state=engine.model.state_dict())
    batch = make_batch(rollouts, torch.zeros(len(rollouts)))
    mine = learner.logprobs(batch)
    mask = batch.response_mask.bool()
    assert torch.allclose(mine[mask], batch.behaviour_logp[mask], atol=1e-4)
    plain = Learner(LearnerSpec.create(Megrez2Config.preset("tiny")), initial_state=engine.model.state_dict())
    assert not torch.allclose(plain.logprobs(batch)[mask], batch.behaviour_logp[mask], atol=1e-2)


def test_latest_checkpoint_ignores_partial_folders(tmp_path: Path) -> None:
    for name in ("step_2", "step_10", "step_11.partial", "step_x"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints/step_10"
    assert latest_checkpoint(tmp_path / "none") is None


def test_resuming_over_a_changed_prompt_set_stops_or_starts_a_new_epoch() -> None:
    rows = [PromptRow(str(i), "p", "1") for i in range(10)]
    state = {"step": 4, "sampler": {"epoch": 2, "position": 6}, "prompts": fingerprint(rows)}
    assert check_same_prompts(state, fingerprint(rows), "error") == {"epoch": 2, "position": 6}
    for changed in (rows[:5], [*rows, PromptRow("x", "p", "1")], rows[::-1]):
        with pytest.raises(ValueError, match="prompt set changed .*on_data_change=new_epoch"):
            check_same_prompts(state, fingerprint(changed), "error")
        assert check_same_prompts(state, fingerprint(changed), "new_epoch") == {"epoch": 3, "position": 0}


def test_a_non_finite_reward_becomes_status_error_and_the_wrong_reward() -> None:
    rows = [
        PromptRow("a", "q", "1", "tests.rl_fixtures:NaNRewardVerifier"),
        PromptRow("b", "q", "1", "numeric"),
    ]
    texts = {0: ["nan", "inf", "no"], 1: ["1", "2", "x"]}
    tokenizer = _Chars()

    def generate(prompts, n, max_new, temperature, seeds, top_p):  # noqa: ANN001, ANN202
        from rollout.types import Rollout

        return [
            Rollout(p, s, prompts[p], tokenizer.encode(texts[p][s]), [0.0] * len(texts[p][s]), "stop")
            for p in range(len(prompts))
            for s in range(n)
        ]

    with VerifierRouter("math", num_workers=1) as router:
        sampler = Sampler(tokenizer, generate, router.verify_batch, reward_wrong=-1.0)
        scored = sampler.sample(rows, SamplingSettings(3, 4), None)
    assert [s.result.status for s in scored] == ["error", "error", "wrong", "ok", "wrong", "no_answer"]
    assert [s.reward for s in scored] == [-1.0, -1.0, -1.0, 1.0, -1.0, -1.0]
    assert "non-finite reward" in scored[0].result.detail


class _Chars:
    """Bytes as token ids (enough to round-trip ASCII through a fake engine)."""

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        return list(text.encode())

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode()


@pytest.mark.slow
def test_build_train_eval_round_trip_on_the_builders_parquet(shared_data: Path, tmp_path: Path) -> None:
    """The real builder writes a small set from GSM8K and MATH; the trainer takes 1 step on its parquet with
    each row's own verifier; `rlvr eval` reads the same file."""
    recipe = tmp_path / "data.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'set'}\nnum_proc: 1\nlimit_per_source: 30\nsources:\n"
        f"  - {{name: gsm8k, path: {shared_data / 'gsm8k_train.jsonl'}, adapter: gsm8k, license: MIT}}\n"
        f"  - {{name: math, path: {shared_data / 'math_train.jsonl'}, adapter: math, license: MIT}}\n"
        "difficulty: {enabled: false}\n"
    )
    _rlvr("data", "build", str(recipe))
    parquet = tmp_path / "set/prompts.parquet"
    rows = read_prompt_file(parquet).rows
    assert {r.verifier for r in rows} == {"numeric", "math"} and read_prompt_file(parquet).malformed == 0
    run = tmp_path / "run"
    train = [
        f"run.output_dir={run}",
        f"data.train_files=[{parquet}]",
        "data.max_prompt_tokens=480",  # the tiny preset's context is 512
        "trainer.steps=1",
        "trainer.wandb=false",
        "rollout.engine=torch",
        "rollout.prompts_per_step=8",
        "rollout.n=2",
        "rollout.max_new_tokens=8",
        "verifier.workers=1",
    ]
    _rlvr("train", "recipes/tiny.yaml", *train)
    (metrics,) = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics["verifier_numeric_count"] + metrics["verifier_math_count"] == 16
    out = tmp_path / "eval.json"
    _rlvr(
        "eval",
        str(run / "checkpoints/step_1"),
        "--data",
        str(parquet),
        "--k",
        "1",
        "--engine",
        "torch",
        "--max-new-tokens",
        "4",
        "--out",
        str(out),
    )
    result = json.loads(out.read_text())
    assert result["prompts"] == len(rows) and set(result["by_source"]) == {"gsm8k", "math"}


def test_benign_vllm_warnings_are_dropped_and_others_kept(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from rollout.vllm_logging import quiet_vllm

    quiet_vllm()
    reload_logger = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    with caplog.at_level(logging.WARNING):
        reload_logger.warning("%s: Failed to load weights", "RotaryEmbedding")
        reload_logger.warning("%s: Failed to load weights", "QKVParallelLinear")  # not benign: shown
        logging.getLogger("vllm.renderers.base").warning("Chat template warmup failed")
    assert [r.getMessage() for r in caplog.records] == ["QKVParallelLinear: Failed to load weights"]
