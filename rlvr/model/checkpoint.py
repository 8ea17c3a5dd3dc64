"""Megrez2 checkpoints in the official HF layout: safetensors, sharded with `model.safetensors.index.json`
past `max_shard_bytes`, plus `config.json`.

In memory a group's routed experts are one stacked bank that three layers reference; on disk they appear once,
per expert, under the group's leader layer only:

    model.layers.{leader}.mlp.experts.{j}.gate_proj.weight   (F, D)  = bank.w_gate_up_E2FD[j, :F]
    model.layers.{leader}.mlp.experts.{j}.up_proj.weight     (F, D)  = bank.w_gate_up_E2FD[j, F:]
    model.layers.{leader}.mlp.experts.{j}.down_proj.weight   (D, F)  = bank.w_down_EDF[j]

Every other tensor keeps its in-memory name (`model.layers.{i}.mlp.gate.weight`,
`...mlp.gate.e_score_correction_bias`, `...mlp.shared_experts.*`, attention, norms,
`model.embed_tokens.weight`, `model.norm.weight`, `lm_head.weight`). `official_views(model)` is the one name
map used both ways: official name -> a view into the model's storage. Saving writes those views; loading
copies into them, tensor by tensor, so a big checkpoint streams through memory (the model is built on the meta
device and materialised empty first).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from rlvr.model.config import Megrez2Config

if TYPE_CHECKING:
    from rlvr.model.megrez2 import Megrez2ForCausalLM

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


class CheckpointMismatchError(ValueError):
    """Checkpoint and model tensors differ: the message lists every missing, unexpected or misshapen name."""


def official_views(model: Megrez2ForCausalLM) -> dict[str, Tensor]:
    """Official checkpoint name -> tensor aliasing the model's storage, in layer order."""
    config = model.config
    views: dict[str, Tensor] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if ".mlp.experts." in name:  # the bank, listed once per layer of its group: emitted per expert below
            layer_id = int(_LAYER.match(name).group(1))
            if config.group_leader(layer_id) == layer_id and name.endswith("w_gate_up_E2FD"):
                views.update(_expert_views(model, layer_id))
        elif not (name == "lm_head.weight" and config.tie_word_embeddings):
            views[name] = tensor.detach()
    return views


def _expert_views(model: Megrez2ForCausalLM, leader: int) -> dict[str, Tensor]:
    bank = model.model.layers[leader].mlp.experts
    w_gate_up, w_down, F = bank.w_gate_up_E2FD.detach(), bank.w_down_EDF.detach(), bank.hidden
    views = {}
    for j in range(bank.num_experts):
        prefix = f"model.layers.{leader}.mlp.experts.{j}."
        views[prefix + "gate_proj.weight"] = w_gate_up[j, :F]
        views[prefix + "up_proj.weight"] = w_gate_up[j, F:]
        views[prefix + "down_proj.weight"] = w_down[j]
    return views


def _ignored(name: str, config: Megrez2Config) -> bool:
    """Tensors a real checkpoint may carry that this model does not use: multi-token-prediction layers past
    num_hidden_layers (only when the config declares them) and stale rotary caches of old exports."""
    if name.endswith("rotary_emb.inv_freq"):
        return True
    match = _LAYER.match(name)
    return bool(
        match
        and int(match.group(1)) >= config.num_hidden_layers
        and config.extra.get("num_nextn_predict_layers", 0) > 0
    )


# ---- save


def save_pretrained(model: Megrez2ForCausalLM, path: str | Path, max_shard_bytes: int = 4 << 30) -> None:
    """Write config.json and the weights in the official layout; more than one shard gets an index file."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for stale in [*path.glob("model*.safetensors"), path / INDEX_FILE]:  # a previous save's shards
        stale.unlink(missing_ok=True)
    dtype = str(model.lm_head.weight.dtype).removeprefix("torch.")
    dataclasses.replace(model.config, torch_dtype=dtype).to_json(path / "config.json")

    views = official_views(model)
    shards: list[list[str]] = [[]]
    size = 0
    for name, tensor in views.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes

    weight_map = {}
    for k, names in enumerate(shards):
        file = SINGLE_FILE if len(shards) == 1 else f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        # Own copies: expert views share storage, which safetensors refuses; one shard in memory at a time.
        tensors = {n: views[n].to("cpu", copy=True).contiguous() for n in names}
        save_file(tensors, str(path / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, file))
    if len(shards) > 1:
        total = sum(t.numel() * t.element_size() for t in views.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (path / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")


# ---- load


def checkpoint_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if (path / INDEX_FILE).exists():
        weight_map = json.loads((path / INDEX_FILE).read_text())["weight_map"]
        return [path / f for f in sorted(set(weight_map.values()))]
    if (path / SINGLE_FILE).exists():
        return [path / SINGLE_FILE]
    raise FileNotFoundError(f"no {SINGLE_FILE} or {INDEX_FILE} in {path}")


@torch.no_grad()
def load_checkpoint(model: Megrez2ForCausalLM, path: str | Path) -> None:
    """Copy a checkpoint into `model` (cast to its dtypes). Names and shapes are checked from the file headers
    before anything is read; a mismatch raises CheckpointMismatchError listing every offending name."""
    views = official_views(model)
    found: dict[str, tuple[int, ...]] = {}
    files = checkpoint_files(path)
    for file in files:
        with safe_open(str(file), framework="pt") as reader:
            for name in reader.keys():  # noqa: SIM118 (a safetensors reader is not a dict)
                if not _ignored(name, model.config):
                    found[name] = tuple(reader.get_slice(name).get_shape())
    missing = sorted(views.keys() - found.keys())
    unexpected = sorted(found.keys() - views.keys())
    misshapen = [
        f"{n}: checkpoint {list(s)} vs model {list(views[n].shape)}"
        for n, s in found.items()
        if n in views and s != tuple(views[n].shape)
    ]
    if missing or unexpected or misshapen:
        parts = [
            f"{title} ({len(items)}):\n    " + "\n    ".join(items)
            for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen))
            if items
        ]
        raise CheckpointMismatchError(f"checkpoint {path} does not match the model:\n  " + "\n  ".join(parts))
    for file in files:
        with safe_open(str(file), framework="pt") as reader:
            for name in reader.keys():  # noqa: SIM118
                if name in views:
                    views[name].copy_(reader.get_tensor(name))
