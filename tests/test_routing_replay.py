"""Rollout Routing Replay (R3): both engines return the experts they routed every token to, the learner
replays them (`algorithm.routing_replay: rollout`) and reports how often its own routers disagree
(`routing_mismatch`).

The checkpoint with routing worth replaying is a random tiny Megrez2 whose routers sit near ties: in every MoE
layer all experts' router rows are one row plus noise of 1e-5 of its scale (no correction bias), so the top-k
is decided by differences as small as the float32 rounding of the two engines' kernels; the routed experts are
scaled up 10x so that a flipped choice moves log-probs visibly. Without replay a few percent of (token, layer)
pairs are routed differently and log-probs differ by ~0.1; with replay they agree to float32 rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlvr.batch import TrainBatch, make_batch
from rlvr.config import load_recipe
from rlvr.learner import Learner, LearnerSpec
from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rlvr.routing_replay import check_routing_replay, mismatch_counts, pack_routing, routing_metrics
from rollout.torch_engine import TorchEngine
from rollout.types import Rollout
from tests.fresh_python import run_script

REPO = Path(__file__).resolve().parents[1]
EOS = 2
PROMPTS = [
    torch.randint(3, 256, (n,), generator=torch.Generator().manual_seed(n)).tolist()
    for n in (3, 5, 8, 11, 16, 4, 9, 20)
]
PARITY = 1e-4  # learner vs engine log-prob of a sampled token, float32 on both sides (as tests/test_vllm_*)


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny model gains nothing from intra-op threads; on a busy machine their spin-waits cost 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_model(seed: int = 0) -> Megrez2ForCausalLM:
    """The vLLM tests' checkpoint: random weights and a non-zero correction bias."""
    torch.manual_seed(seed)
    model = Megrez2ForCausalLM(Megrez2Config.preset("tiny"))
    with torch.no_grad():
        for i in model.config.moe_layer_ids:
            model.model.layers[i].mlp.gate.e_score_correction_bias.normal_(0, 0.05)
    return model.eval()


def near_tie_state(model: Megrez2ForCausalLM, eps: float = 1e-5, expert_scale: float = 10.0, seed: int = 1):  # noqa: ANN201
    """`model`'s weights with every router's rows one row plus eps-relative noise, no correction bias, and
    routed experts scaled by `expert_scale` (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, value in state.items():
        if name.endswith("mlp.gate.weight"):
            state[name] = value[:1] + eps * value.std() * torch.randn(value.shape, generator=g)
        elif name.endswith("e_score_correction_bias"):
            value.zero_()
        elif ".experts.w_" in name:
            value.mul_(expert_scale)
    return state


def native_choice(model: Megrez2ForCausalLM, r: Rollout) -> torch.Tensor:
    """(P + R - 1, L, K): the experts the native model picks, in float32, at every position but the last."""
    with torch.no_grad():
        out = model(torch.tensor([r.prompt_ids + r.response_ids]))
    return out.expert_indices[:, 0, :-1].permute(1, 0, 2)


def same_sets(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.long().sort(-1).values == b.long().sort(-1).values).all(-1)


def learner_for(state: dict[str, torch.Tensor], replay: str, **algorithm) -> Learner:  # noqa: ANN003
    spec = LearnerSpec.create(
        Megrez2Config.preset("tiny"), {"lr": 1e-3}, {"routing_replay": replay, **algorithm}
    )
    learner = Learner(spec)
    learner.model.load_state_dict(state)
    return learner


def logprob_gap(learner: Learner, batch: TrainBatch) -> float:
    """max |learner − engine| log-prob over the batch's sampled response tokens."""
    mask = batch.response_mask.bool()
    return float((learner.logprobs(batch) - batch.behaviour_logp)[mask].abs().max())


def replay_report(state: dict[str, torch.Tensor], rollouts: list[Rollout]) -> dict[str, float]:
    """The learner's gap to the engine's log-probs and its routing mismatch, with and without replay."""
    batch = make_batch(rollouts, torch.zeros(len(rollouts)), pad_token_id=0)
    report = {}
    for replay in ("off", "rollout"):
        learner = learner_for(state, replay)
        report[f"gap_{replay}"] = logprob_gap(learner, batch)
        metrics = learner.train_step(batch)  # first pass: the recompute, before the update
        report[f"mismatch_{replay}"] = metrics["routing_mismatch"]
    return report


# ---- the torch engine, the learner side, the metric


def test_torch_engine_returns_the_experts_of_every_fed_position() -> None:
    model = random_model()
    engine = TorchEngine(model, eos_token_id=[EOS, 7, 11, 13], capture_routing=True)  # some stop early
    rollouts = engine.generate(PROMPTS[:4], n=3, max_new_tokens=12, temperature=1.0, seed=4)
    assert len({len(r.response_ids) for r in rollouts}) > 1  # rows of different lengths, left-padded prompts
    for r in rollouts:
        assert r.routing.dtype == torch.uint8  # 8 experts fit a byte
        assert r.routing.shape == (len(r.prompt_ids) + len(r.response_ids) - 1, 6, 2)
        assert same_sets(r.routing, native_choice(model, r)).all()
    greedy = engine.generate_greedy(PROMPTS[:2], 6)
    assert all(same_sets(r.routing, native_choice(model, r)).all() for r in greedy)
    assert TorchEngine(model, eos_token_id=EOS).generate(PROMPTS[:1], 1, 4)[0].routing is None  # off


def test_replay_makes_the_learner_score_the_engines_policy_on_a_near_tie_checkpoint() -> None:
    """The torch engine decodes with its KV cache, one token at a time, the learner scores whole sequences:
    the same function, rounded differently, which near ties turn into different experts."""
    model = random_model()
    state = near_tie_state(model)
    model.load_state_dict(state)
    engine = TorchEngine(model, eos_token_id=EOS, capture_routing=True)
    rollouts = engine.generate(PROMPTS, n=4, max_new_tokens=24, temperature=1.0, seed=3)
    report = replay_report(state, rollouts)
    print(f"near-tie checkpoint, torch engine vs learner: {report}")
    assert report["mismatch_off"] > 0.005 and report["gap_off"] > 10 * PARITY  # routing drift shows
    assert report["gap_rollout"] < PARITY  # replayed: the learner scores the policy that sampled
    assert report["mismatch_rollout"] > 0  # still reported: the learner's own routers disagree
    # with the engine's log-probs as the old policy, the first (here the only) epoch's pass is counted
    behaviour = learner_for(state, "rollout", old_logprobs="behaviour")
    metrics = behaviour.train_step(make_batch(rollouts, torch.zeros(len(rollouts))))
    assert metrics["routing_mismatch"] == pytest.approx(report["mismatch_rollout"])


def test_mismatch_counts_response_and_prompt_pairs_separately() -> None:
    model = random_model()
    engine = TorchEngine(model, eos_token_id=EOS, capture_routing=True)
    rollouts = engine.generate(PROMPTS[:2], n=2, max_new_tokens=5, temperature=1.0, seed=1)
    batch = make_batch(rollouts, torch.zeros(len(rollouts)))
    with torch.no_grad():
        choice = model(batch.input_ids, attention_mask=batch.attention_mask).router_choice
    counts = mismatch_counts(choice, batch.routing, batch.response_mask, batch.attention_mask)
    fed = sum(len(r.prompt_ids) + len(r.response_ids) - 1 for r in rollouts)
    response = sum(len(r.response_ids) - 1 for r in rollouts)
    assert counts.tolist() == [0, response * 6, 0, (fed - response) * 6]
    # the engine routed one response token of row 0 in layer 2 to other experts, and one prompt token
    moved = batch.routing.clone()
    p = len(rollouts[0].prompt_ids)
    moved[0, p, 2] = (moved[0, p, 2] + 1) % 8
    moved[1, 0, 0] = (moved[1, 0, 0] + 3) % 8
    counts = mismatch_counts(choice, moved, batch.response_mask, batch.attention_mask)
    assert counts.tolist() == [1, response * 6, 1, (fed - response) * 6]
    assert routing_metrics(counts)["routing_mismatch"] == pytest.approx(1 / (response * 6))


def test_packing_routing_and_refusals() -> None:
    routes = torch.zeros(4, 6, 2, dtype=torch.uint8)
    a = Rollout(0, 0, [1, 2, 3], [4, 5], [0.0, 0.0], "length", routing=routes)
    b = Rollout(0, 1, [1, 2], [4], [0.0], "length", routing=torch.ones(2, 6, 2, dtype=torch.uint8))
    packed = pack_routing([a, b], 5)
    assert packed.shape == (2, 5, 6, 2) and packed.dtype == torch.int16
    assert (packed[0, :4] == 0).all() and (packed[0, 4:] == -1).all()  # the last token: own choice
    assert (packed[1, :2] == 1).all() and (packed[1, 2:] == -1).all()
    assert pack_routing([Rollout(0, 0, [1], [2], [0.0], "length")], 2) is None
    with pytest.raises(ValueError, match="expected"):
        pack_routing([Rollout(0, 0, [1], [2, 3], [0.0] * 2, "length", routing=a.routing)], 3)
    # replay needs routing; a model without MoE layers has none to capture
    learner = learner_for(random_model().state_dict(), "rollout")
    plain = make_batch([Rollout(0, 0, [5, 6], [7], [-1.0], "length")], torch.zeros(1))
    with pytest.raises(ValueError, match="carry no routing"):
        learner.train_step(plain)
    dense = Megrez2Config.preset("tiny", first_k_dense_replace=7)
    recipe = load_recipe(REPO / "recipes/tiny.yaml", ["algorithm.routing_replay=rollout"])
    with pytest.raises(ValueError, match="no MoE layer"):
        check_routing_replay(recipe, dense)
    with pytest.raises(ValueError, match="no MoE layer"):
        TorchEngine(Megrez2ForCausalLM(dense), eos_token_id=EOS, capture_routing=True)


# ---- vLLM: the plugin's capture against the native model, and replay on the near-tie checkpoint


@pytest.fixture(scope="module")
def vllm_setup(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from rollout.vllm_engine import VLLMEngine

    model = random_model()
    ckpt = tmp_path_factory.mktemp("tiny-megrez2-r3")
    model.save_pretrained(ckpt)
    return VLLMEngine(ckpt, EOS, dtype="float32", seed=0, capture_routing=True), model


@pytest.mark.slow
def test_vllm_returns_the_experts_the_native_model_chooses(vllm_setup) -> None:
    engine, model = vllm_setup
    sampled = engine.generate(PROMPTS, n=3, max_new_tokens=16, temperature=1.0, seed=2)
    greedy = engine.generate_greedy(PROMPTS, 16)
    for r in sampled + greedy:
        assert r.routing.dtype == torch.uint8
        assert r.routing.shape == (len(r.prompt_ids) + len(r.response_ids) - 1, 6, 2)
        # every position, every sample of a prompt (no prefix cache: each sample's prompt was computed)
        assert same_sets(r.routing, native_choice(model, r)).all(), (r.prompt_index, r.sample_index)


@pytest.mark.slow
def test_vllm_replay_gives_the_learner_the_engines_log_probs_on_a_near_tie_checkpoint(vllm_setup) -> None:
    engine, model = vllm_setup
    state = near_tie_state(model)
    engine.update_weights(state)
    try:
        rollouts = engine.generate(PROMPTS, n=4, max_new_tokens=24, temperature=1.0, seed=3)
    finally:
        engine.update_weights(model.state_dict())
    report = replay_report(state, rollouts)
    print(f"near-tie checkpoint, vLLM vs learner: {report}")
    assert report["mismatch_off"] > 0.02 and report["gap_off"] > 100 * PARITY
    assert report["gap_rollout"] < PARITY
    assert report["mismatch_rollout"] > 0.02  # the metric is logged either way, and measures the drift
    # the engine's routing is the native model's wherever the native routers are not at a near tie
    tied = Megrez2ForCausalLM(model.config)
    tied.load_state_dict(state)
    agree = torch.cat([same_sets(r.routing, native_choice(tied.eval(), r)).flatten() for r in rollouts])
    assert 0.9 < float(agree.float().mean()) < 1.0


SPAWNED_ENGINE = """
import json, sys
import torch
from rollout.vllm_engine import VLLMEngine

if __name__ == "__main__":  # the engine core is a spawned process
    engine = VLLMEngine(sys.argv[1], 2, dtype="float32", in_process=False, capture_routing=True)
    rollouts = engine.generate(json.loads(sys.argv[2]), n=2, max_new_tokens=8, seed=1)
    print("ROUTES", json.dumps([[r.prompt_ids + r.response_ids, r.routing.tolist()] for r in rollouts]))
"""


@pytest.mark.slow
def test_vllm_capture_works_with_a_spawned_engine_core(vllm_setup, tmp_path: Path) -> None:
    """The recorder is reached by method name through vLLM's worker extension, so an engine core in another
    process captures too (its reply carries plain bytes)."""
    _, model = vllm_setup
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "1", "PYTHONPATH": str(REPO)}
    stdout = run_script(SPAWNED_ENGINE, [str(ckpt), json.dumps(PROMPTS[:2])], tmp_path, env)
    line = next(x for x in stdout.splitlines() if x.startswith("ROUTES "))
    for ids, routing in json.loads(line.removeprefix("ROUTES ")):
        routing = torch.tensor(routing)
        assert routing.shape == (len(ids) - 1, 6, 2)
        assert same_sets(routing, native_choice(model, Rollout(0, 0, ids[:1], ids[1:], [], "length"))).all()


# ---- through the trainer: the metric is in the step's metrics with replay on and off


@pytest.mark.slow
@pytest.mark.parametrize(
    ("engine", "settings"),
    [("vllm", ["algorithm.routing_replay=rollout"]), ("torch", ["rollout.capture_routing=true"])],
    ids=["vllm-replay", "torch-metric-only"],
)
def test_train_logs_routing_mismatch(tmp_path: Path, engine: str, settings: list[str]) -> None:
    from rlvr.cluster import ray_session
    from rlvr.trainer import train

    overrides = [
        f"run.output_dir={tmp_path}",
        "trainer.steps=1",
        "rollout.prompts_per_step=2",
        "rollout.n=2",
        "rollout.max_new_tokens=8",
        f"rollout.engine={engine}",
        "trainer.wandb=false",
        *settings,
    ]
    with ray_session(4, log_to_driver=False):
        train(load_recipe(REPO / "recipes/tiny.yaml", overrides))
    (metrics,) = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert 0 <= metrics["routing_mismatch"] <= 1 and 0 <= metrics["routing_mismatch_prompt"] <= 1
    assert metrics["parity_max_abs"] < PARITY * 10
