"""The RL system features: dynamic sampling, surviving a dead worker, several verifier actors, sample dumps
and `rlvr show`, checkpoint retention and the per-step metrics (multi-node learners: test_multinode.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import ray

from rlvr.cluster import ray_session
from rlvr.config import load_recipe
from rlvr.data import write_prompt_file
from rlvr.data.arithmetic import task_rows
from rlvr.dynamic_sampling import collect_groups, groups_of, informative
from rlvr.threads import node_cores
from rlvr.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
RLVR = str(Path(sys.executable).with_name("rlvr"))
# arithmetic prompts naming no verifier of their own, a model that solves nothing, and a recipe verifier that
# marks every fourth response right (half the groups mixed, half all wrong)
MIXED = [
    "verifier.name=tests.rl_fixtures:CoinVerifier",
    "verifier.processes=1",
    "rollout.engine=torch",
    "rollout.n=2",
    "rollout.prompts_per_step=4",
    "rollout.max_new_tokens=6",
    "trainer.wandb=false",
]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    rows = task_rows("task://arithmetic?n=64&seed=1&max_operand=9&steps=3")
    path = tmp_path_factory.mktemp("prompts") / "arithmetic.jsonl"
    write_prompt_file([dataclasses.replace(r, verifier=None) for r in rows], path)
    MIXED.append(f"data.train_files=[{path}]")
    with ray_session(6):  # a private, loopback-only instance with its own token
        yield


def _trainer(tmp_path: Path, *overrides: str) -> Trainer:
    recipe = load_recipe(REPO / "recipes/tiny.yaml", [f"run.output_dir={tmp_path}", *MIXED, *overrides])
    trainer = Trainer(recipe)
    trainer.setup()
    return trainer


@pytest.mark.slow
def test_dynamic_sampling_fills_the_batch_with_informative_groups(local_ray: None, tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, "algorithm.dynamic_sampling=true", "algorithm.max_sampling_rounds=8")
    try:
        for step in (1, 2):
            metrics = trainer.step(step)
            trained = trainer.last_drawn  # everything drawn; the kept ones are the informative groups
            assert metrics["groups_kept"] == 4 and metrics["dynamic_sampling_short"] == 0.0
            assert metrics["groups_dropped"] > 0 and metrics["sampling_rounds"] >= 2
            assert metrics["sampling_extra_prompts"] == len(trained) // 2 - 4
            # the kept groups' GRPO advantages sum to 0 per group, as without dropping (no group is biased)
            assert abs(metrics["advantage_sum"]) < 1e-4 and metrics["advantage_abs_mean"] > 0
    finally:
        trainer.close()


def test_dynamic_sampling_never_loops_forever_and_says_when_short() -> None:
    from rlvr.data import PromptRow
    from rlvr.sampler import ScoredRollout
    from rollout.types import Rollout
    from verifiers.base import Result

    def draw_all_wrong(count: int, offset: int) -> list[ScoredRollout]:
        row = PromptRow("p", "q", "1")
        return [
            ScoredRollout(
                row, Rollout(p, s, [1], [2], [0.0], "stop"), "x", Result(False, -1.0, "wrong"), "math"
            )
            for p in range(count)
            for s in range(2)
        ]

    kept, drawn, metrics = collect_groups(draw_all_wrong, want=4, n=2, dynamic=True, max_rounds=3)
    assert kept == [] and metrics["dynamic_sampling_short"] == 1.0 and metrics["sampling_rounds"] == 3
    assert (
        len(drawn) == 2 * (4 + metrics["sampling_extra_prompts"])
        and metrics["groups_dropped"] == len(drawn) // 2
    )
    assert not any(informative(g) for g in groups_of(drawn, 2))


@pytest.mark.slow
def test_a_killed_rollout_worker_is_restarted_and_the_step_completes(local_ray: None, tmp_path: Path) -> None:
    trainer = _trainer(
        tmp_path,
        "rollout.workers=2",
        "rollout.prompts_per_step=8",
        "rollout.max_new_tokens=48",
        "rollout.parity_every=1",
    )
    try:
        health = ray.get(trainer.actors.rollout_workers[1].health.remote())
        victim = health["pid"]
        assert health["threads"] == max(1, node_cores() // 2)  # not the one thread Ray gives an actor
        # lands during step 1's generation (≥ 1 s of 48-token sampling; the call goes out in milliseconds)
        killer = threading.Timer(0.2, os.kill, (victim, signal.SIGKILL))
        killer.start()
        first = trainer.step(1)
        killer.join()
        assert first["restarts_rollout_worker"] == 1
        assert sum(first[f"status_{s}"] for s in ("ok", "wrong")) == 16  # every prompt accounted for
        assert ray.get(trainer.actors.rollout_workers[1].health.remote())["pid"] != victim
        second = trainer.step(2)  # the restarted worker serves with the current weights
        assert second["parity_max_abs"] < 1e-4 and second["restarts_rollout_worker"] == 1
    finally:
        trainer.close()


@pytest.mark.slow
def test_two_verifier_actors_share_the_work_dumps_show_and_retention(local_ray: None, tmp_path: Path) -> None:
    trainer = _trainer(
        tmp_path,
        "verifier.workers=2",
        "trainer.dump_every=1",
        "trainer.dump_groups=2",
        "trainer.keep_last=2",
        "trainer.save_every=1",
        "trainer.steps=3",
    )
    trainer.close()
    recipe = trainer.recipe
    metrics = Trainer(recipe).run()
    assert metrics["step"] == 3
    steps = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert steps == ["step_2", "step_3"]  # keep_last=2: step_1 deleted once step_3 was complete
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for m in lines:
        assert sum(m[f"solved_{c}_of_2"] for c in range(3)) == 4  # the groups, by how many were right
        assert "source_task_arithmetic_reward" in m and m["expert_load_max_violation"] >= 0
        assert len(m["expert_load_max_violation_by_layer"]) == 6  # the tiny preset's MoE layers
    dump = [json.loads(x) for x in (tmp_path / "samples/step_2.jsonl").read_text().splitlines()]
    assert len(dump) == 4 and {d["group"] for d in dump} == {0, 1}
    assert {"prompt", "response", "reward", "status", "extracted"} <= set(dump[0])
    shown = subprocess.run([RLVR, "show", str(tmp_path), "--step", "2"], capture_output=True, text=True)
    assert shown.returncode == 0 and "== group 1" in shown.stdout and dump[0]["prompt"] in shown.stdout
    missing = subprocess.run([RLVR, "show", str(tmp_path), "--step", "9"], capture_output=True, text=True)
    assert missing.returncode == 2 and "dumped steps: [1, 2, 3]" in missing.stderr
