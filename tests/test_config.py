"""Typed recipes: validation messages name the field and the allowed values; overrides; round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlvr.config import RecipeError, apply_overrides, load_recipe, parse_override, validate_recipe

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "tiny.yaml"


def errors_for(*overrides: str) -> str:
    with pytest.raises(RecipeError) as info:
        load_recipe(TINY, overrides)
    return str(info.value)


def test_tiny_recipe_loads_with_overrides() -> None:
    config = load_recipe(TINY, ["rollout.n=4", "trainer.steps=5", "optim.betas=[0.8, 0.9]"])
    assert config.rollout.n == 4
    assert config.trainer.steps == 5
    assert config.optim.betas == (0.8, 0.9)
    assert config.model.preset == "tiny"
    assert config.algorithm.kl_coef == 0.0


def test_unknown_key_names_full_path_and_closest_name() -> None:
    message = errors_for("rollout.nn=3")
    assert "unknown key 'rollout.nn'" in message
    assert "did you mean 'rollout.n'" in message
    assert "max_new_tokens" in message  # the allowed keys are listed


def test_unknown_section_lists_sections() -> None:
    message = errors_for("rolout.n=3")
    assert "unknown key 'rolout'" in message and "did you mean 'rollout'" in message


def test_literal_error_lists_allowed_values() -> None:
    message = errors_for("rollout.engine=vlm")
    assert "rollout.engine: 'vlm' is not one of 'vllm', 'torch'" in message
    assert "did you mean 'vllm'" in message


def test_optional_literal_error_lists_allowed_values() -> None:
    message = errors_for("model.preset=tinny")
    assert "model.preset: 'tinny'" in message and "'megrez2-3x7b-a3b'" in message


def test_wrong_type_names_field_value_and_expected_type() -> None:
    message = errors_for("rollout.n=eight")
    assert "rollout.n: got 'eight' (str); expected int" in message


def test_bounds_are_checked() -> None:
    assert "rollout.temperature: got 0; must be greater than 0" in errors_for("rollout.temperature=0")
    assert "rollout.n: got 0; must be greater than or equal to 1" in errors_for("rollout.n=0")
    assert "verifier: hard_timeout_s must be >= soft_timeout_s" in errors_for("verifier.hard_timeout_s=1")


def test_every_problem_is_reported_at_once() -> None:
    message = errors_for("rollout.n=0", "algorithm.clip_low=2", "trainer.bogus=1")
    assert "3 problem(s)" in message
    for key in ("rollout.n", "algorithm.clip_low", "trainer.bogus"):
        assert key in message


def test_missing_required_section() -> None:
    with pytest.raises(RecipeError, match="data: required key is missing"):
        validate_recipe({})


@pytest.mark.parametrize("bad", ["rollout.n", "=3", "rollout..n=3"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(RecipeError, match="not of the form"):
        parse_override(bad)


def test_override_into_a_value_is_an_error() -> None:
    with pytest.raises(RecipeError, match="'rollout.n' is a value"):
        apply_overrides({"rollout": {"n": 8}}, ["rollout.n.x=1"])


def test_override_values_are_yaml_typed() -> None:
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a.b=null") == (["a", "b"], None)
    # PyYAML reads "1e-5" as a string; the float field still validates it to a number.
    assert load_recipe(TINY, ["optim.lr=1e-5"]).optim.lr == pytest.approx(1e-5)
    assert parse_override("a.b=math") == (["a", "b"], "math")


def test_override_text_ending_in_a_colon_stays_text() -> None:
    # YAML alone reads "Answer:" as {"Answer": None}; a prompt instruction is text.
    assert parse_override("data.prompt.instruction=Answer:") == (["data", "prompt", "instruction"], "Answer:")
    assert parse_override("a.b=Final answer: x") == (["a", "b"], "Final answer: x")
    mapping = parse_override("verifier.options={tolerance: 0.1}")
    assert mapping == (["verifier", "options"], {"tolerance": 0.1})
    assert load_recipe(TINY, ["data.prompt.instruction=Answer:"]).data.prompt.instruction == "Answer:"


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    config = load_recipe(TINY, ["rollout.n=3"])
    saved = config.save(tmp_path / "run")
    again = load_recipe(saved)
    assert again == config
    assert "n=3" in config.summary().splitlines()[4]


def test_missing_and_invalid_recipe_files(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(bad)


def test_a_boolean_an_infinity_or_a_beta_of_one_is_not_a_number_here() -> None:
    assert "rollout.n: got True; expected a number, not a boolean" in errors_for("rollout.n=true")
    assert "optim.lr: got inf; must be a finite number" in errors_for("optim.lr=.inf")
    message = errors_for("optim.betas=[1.5, -1]")
    assert "optim.betas.0: got 1.5; must be less than 1" in message and "optim.betas.1: got -1" in message
    assert load_recipe(TINY, ["algorithm.dynamic_sampling=true"]).algorithm.dynamic_sampling is True


def test_an_unknown_advantage_names_its_field_and_the_closest_name() -> None:
    assert "algorithm.advantage: 'grp' is not one of 'grpo', 'rloo'; did you mean 'grpo'?" in errors_for(
        "algorithm.advantage=grp"
    )


def test_fields_that_fit_alone_but_not_together_are_refused_by_name() -> None:
    assert "rollout.n=1: a group baseline" in errors_for("rollout.n=1")
    message = errors_for("resources.learner_workers=5", "rollout.prompts_per_step=1", "rollout.n=4")
    assert "resources.learner_workers=5 is more than the 4 sequences of a step" in message
    message = errors_for("resources.learner_workers=3", "resources.fsdp=true")
    assert "resources.fsdp with learner_workers=3 needs the 64 sequences" in message
    assert load_recipe(TINY, ["resources.learner_workers=3"]).resources.learner_workers == 3  # uneven is fine


def test_keys_inside_a_list_of_sections_get_the_same_help() -> None:
    from rlvr.data.build import DataBuildConfig

    source = "{name: g, path: a.jsonl, adapter: gsm8kk, licence: MIT}"
    with pytest.raises(RecipeError) as info:
        load_recipe(REPO / "recipes/data.yaml", [f"sources=[{source}]"], schema=DataBuildConfig)
    message = str(info.value)
    assert (
        "sources.0.adapter: 'gsm8kk' is not one of 'gsm8k'" in message and "did you mean 'gsm8k'" in message
    )
    assert "unknown key 'sources.0.licence'; did you mean 'sources.0.license'?" in message
    assert "(allowed here: name, path, adapter, license" in message
