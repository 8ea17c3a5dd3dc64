"""`rlvr sft`: supervised fine-tuning before RL, as the Megrez2 report does it (§4.2.1), on the Learner ranks.

Conversations (or prompt-set rows with worked solutions) are rendered through the model's chat template, cut
into steps of `sft.batch_tokens`, packed into rows of `sft.seq_len` with samples mutually invisible and
positions reset, and trained with the turn-level (or token-level) loss for `sft.epochs` under a cosine
schedule. Checkpoints every `sft.save_every` steps resume exactly; the result is a checkpoint in the
official layout plus the tokenizer (`sft_dir`), marked done with a fingerprint of the data and settings, so
a changed data file, learning rate or model trains again instead of reusing a stale result.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rlvr.actors import LearnerGroup, learner_spec, required_resources
from rlvr.cluster import ray_session
from rlvr.config import RecipeConfig, RecipeError
from rlvr.data import load_prompts
from rlvr.learner import model_config_for
from rlvr.sampler import PromptFormat
from rlvr.seeds import derive_seed
from rlvr.sft_data import (
    Problems,
    Sample,
    SFTBatch,
    epoch_steps,
    fit_length,
    is_conversation_file,
    lay_out,
    pad_rows,
    prompt_solution_sample,
    read_conversations,
    render,
)
from rlvr.tokenizer import load_tokenizer


def sft_dir(recipe: RecipeConfig) -> Path:
    return recipe.run.dir / "sft"


@dataclass
class SFTData:
    train: list[Sample]
    heldout: list[Sample]
    problems: Problems


def load_samples(recipe: RecipeConfig, tokenizer: Any) -> SFTData:
    """`sft.data` as samples that fit `sft.seq_len`, `sft.heldout` of them set aside (seeded). Rows that
    cannot be trained on are counted in `problems`; RecipeError when none is left."""
    cfg, problems = recipe.sft, Problems()
    path = Path(cfg.data)
    if is_conversation_file(path):
        if not getattr(tokenizer, "chat_template", None):
            raise RecipeError(
                f"sft.data {path} holds conversations: the tokenizer needs a chat template (use a model or "
                "model.tokenizer that has one, or a prompt set with worked solutions)"
            )
        samples = []
        for line, row in read_conversations(path, problems):
            where = f"{path.name} line {line}"
            try:
                samples.append(replace(render(tokenizer, row["messages"]), origin=where))
            except Exception as exc:  # a template may raise anything (jinja's own errors included)
                problems.add(f"chat template cannot render it ({exc})", where)
    else:
        prompt_format = PromptFormat(tokenizer, recipe.data.prompt)
        try:
            rows = load_prompts([cfg.data], "sft.data")
        except (FileNotFoundError, ValueError) as exc:
            raise RecipeError(str(exc) if str(exc).startswith("sft.data") else f"sft.data: {exc}") from None
        samples = [
            prompt_solution_sample(
                prompt_format.ids(row),
                tokenizer.encode(str(row.meta.get("solution", row.answer)), add_bos=False),
                tokenizer.eos_token_id,
            )
            for row in rows
        ]
    samples = fit_length(samples, cfg.seq_len, cfg.overlong, problems)
    if len(samples) <= cfg.heldout:
        raise RecipeError(
            f"sft.data {cfg.data}: {len(samples)} usable samples, sft.heldout={cfg.heldout}: nothing left "
            f"to train on ({problems.summary()})"
        )
    random.Random(derive_seed(recipe.run.seed, "sft")).shuffle(samples)
    return SFTData(samples[cfg.heldout :], samples[: cfg.heldout], problems)


def fingerprint(recipe: RecipeConfig) -> str:
    """What the SFT result depends on: the data file's bytes, the sft section, the starting model and the
    prompt format. A done marker or checkpoint with another fingerprint is stale."""
    h = hashlib.sha256()
    data = Path(recipe.sft.data)
    if data.is_file():
        with data.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    else:  # task://...
        h.update(recipe.sft.data.encode())
    settings = recipe.sft.model_dump(mode="json", exclude={"data"})  # the data counts by its bytes, not path
    for part in (settings, recipe.data.prompt.model_dump(mode="json")):
        h.update(json.dumps(part, sort_keys=True).encode())
    model, tokenizer = (Path(p).resolve() if p else None for p in (recipe.model.path, recipe.model.tokenizer))
    h.update(f"{model}|{recipe.model.preset}|{tokenizer}|{recipe.run.seed}".encode())
    if model and (model / "config.json").is_file():
        h.update((model / "config.json").read_bytes())
    return h.hexdigest()[:16]


def is_done(recipe: RecipeConfig) -> bool:
    """Whether `sft_dir` holds this recipe's finished SFT (same fingerprint)."""
    done = sft_dir(recipe) / "sft_done.json"
    return done.is_file() and json.loads(done.read_text()).get("fingerprint") == fingerprint(recipe)


def schedule(data: SFTData, recipe: RecipeConfig) -> list[tuple[int, list[int]]]:
    """Every optimiser step as (epoch, sample indices): `sft.epochs` passes (a fraction takes the first part
    of the last epoch), each in its own seeded order, capped at `sft.steps` (or only that many steps)."""
    cfg, lengths = recipe.sft, [len(s) for s in data.train]
    steps: list[tuple[int, list[int]]] = []
    epoch = 0
    while (cfg.epochs and epoch < cfg.epochs) or (not cfg.epochs and len(steps) < cfg.steps):
        part = epoch_steps(lengths, cfg.batch_tokens, cfg.seq_len, derive_seed(recipe.run.seed, "sft", epoch))
        if cfg.epochs and epoch + 1 > cfg.epochs:
            part = part[: max(1, round(len(part) * (cfg.epochs - epoch)))]
        steps += [(epoch, s) for s in part]
        epoch += 1
    return steps[: cfg.steps] if cfg.steps else steps


def batches(
    data: SFTData,
    plan: list[tuple[int, list[int]]],
    recipe: RecipeConfig,
    pad_id: int,
    ranks: int,
    start: int = 0,
) -> Iterator[tuple[int, int, SFTBatch]]:
    """(step, epoch, rows) from step `start` + 1 on, rows padded to a multiple of the rank count."""
    cfg = recipe.sft
    for step, (epoch, index) in enumerate(plan[start:], start + 1):
        samples = [data.train[i] for i in index]
        yield step, epoch, pad_rows(lay_out(samples, cfg.seq_len, cfg.packing, cfg.loss, pad_id), ranks)


def heldout_loss(group: LearnerGroup, data: SFTData, recipe: RecipeConfig, pad_id: int) -> float | None:
    """The SFT loss over the held-out samples (Σ w·nll / Σ w, as training computes it), or None."""
    if not data.heldout:
        return None
    cfg, total, weight = recipe.sft, 0.0, 0.0
    lengths = [len(s) for s in data.heldout]
    for index in epoch_steps(lengths, cfg.batch_tokens, cfg.seq_len, 0):
        batch = lay_out([data.heldout[i] for i in index], cfg.seq_len, cfg.packing, cfg.loss, pad_id)
        w = float(batch.loss_weight.sum())
        total += group.step("sft_eval", pad_rows(batch, len(group))) * w
        weight += w
    return total / weight


def latest(out: Path, fp: str) -> tuple[int, Path] | None:
    """The newest complete checkpoint of this fingerprint: (step, folder)."""
    found = []
    for state in out.glob("checkpoints/step_*/sft_state.json"):
        info = json.loads(state.read_text())
        if info.get("fingerprint") == fp:
            found.append((int(info["step"]), state.parent))
    return max(found) if found else None


def save_checkpoint(group: LearnerGroup, out: Path, step: int, fp: str) -> None:
    """`checkpoints/step_N` (model, optimiser, RNG of every rank), then older ones removed."""
    folder = out / "checkpoints" / f"step_{step}"
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    group.save(str(partial))
    (partial / "sft_state.json").write_text(json.dumps({"step": step, "fingerprint": fp}))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    for old in out.glob("checkpoints/step_*"):
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)


def run_sft(recipe: RecipeConfig, log: bool = True) -> Path:
    """Trains `recipe.model` (from `model.path`, else its preset) on `recipe.sft.data` on the recipe's
    learner ranks; returns the checkpoint folder (`sft_dir`). Resumes from the newest checkpoint of the
    same fingerprint. RecipeError when the data has nothing to train on."""
    cfg, out, fp = recipe.sft, sft_dir(recipe), fingerprint(recipe)
    if not cfg.enabled:
        raise RecipeError("sft.epochs and sft.steps are 0: set one (sft.epochs=2)")
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(recipe.model.tokenizer or recipe.model.path)
    data = load_samples(recipe, tokenizer)
    plan = schedule(data, recipe)
    _check(recipe, data, plan, log)
    _say(
        log,
        f"sft: {len(data.train)} samples ({sum(map(len, data.train))} tokens), {len(data.heldout)} "
        f"held out, {len(plan)} steps; {data.problems.summary()}",
    )
    with ray_session(required_resources(recipe)["CPU"]):
        group = LearnerGroup(recipe, learner_spec(recipe, model_config_for(recipe)))
        group.all("start_sft", cfg, len(plan))
        resumed = latest(out, fp)
        if resumed:
            group.load(str(resumed[1]))
            _say(log, f"sft: resumed from {resumed[1]}")
        last = _train(
            group, data, plan, recipe, tokenizer.pad_token_id, resumed[0] if resumed else 0, fp, log
        )
        group.save(str(out))
        group.close()
    tokenizer.save(out)
    summary = {
        "fingerprint": fp,
        "steps": len(plan),
        "samples": len(data.train),
        **last,
        "dropped": data.problems.dropped,
        "data": cfg.data,
    }
    (out / "sft_done.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return out


def _train(
    group: LearnerGroup,
    data: SFTData,
    plan: list[tuple[int, list[int]]],
    recipe: RecipeConfig,
    pad_id: int,
    start: int,
    fp: str,
    log: bool,
) -> dict[str, Any]:
    """The step loop from step `start` + 1: update, log, held-out loss, checkpoint. Returns the last row."""
    cfg, out = recipe.sft, sft_dir(recipe)
    metrics_path = out / "metrics.jsonl"
    kept = [ln for ln in _lines(metrics_path) if json.loads(ln)["step"] <= start]
    metrics_path.write_text("".join(kept))
    began, tokens, row = time.perf_counter(), 0, {}
    for step, epoch, batch in batches(data, plan, recipe, pad_id, len(group), start):
        row = {"step": step, "epoch": epoch, **group.step("sft_step", batch)}
        real = int((batch.document_ids >= 0).sum())
        tokens += real
        row.update(tokens=real, rows=len(batch), padding=1 - real / batch.document_ids.numel())
        row.update(tokens_per_s=tokens / (time.perf_counter() - began), time_s=time.perf_counter() - began)
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == len(plan):
            row["heldout_loss"] = heldout_loss(group, data, recipe, pad_id)
        with metrics_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if step % cfg.log_every == 0 or step == len(plan) or "heldout_loss" in row:
            held = f"  held-out {row['heldout_loss']:.4f}" if row.get("heldout_loss") is not None else ""
            _say(
                log,
                f"sft step {step:>5}/{len(plan)}  epoch {epoch}  loss {row['loss']:.4f}{held}  "
                f"{row['tokens_per_s']:.0f} tokens/s  {row['time_s']:.0f}s",
            )
        if cfg.save_every and step % cfg.save_every == 0 and step < len(plan):
            save_checkpoint(group, out, step, fp)
    return row


def _check(recipe: RecipeConfig, data: SFTData, plan: list[tuple[int, list[int]]], log: bool) -> None:
    """RecipeError when the tokenizer's ids do not fit the model's vocabulary; a note when the warm-up
    outlasts the run."""
    vocab = model_config_for(recipe).vocab_size
    biggest = max(max(s.ids) for s in data.train + data.heldout)
    if biggest >= vocab:
        raise RecipeError(
            f"the tokenizer gives token id {biggest} but the model's vocabulary has {vocab} entries: "
            "model.tokenizer does not belong to this model"
        )
    if recipe.sft.warmup_steps >= len(plan):
        _say(log, f"note: sft.warmup_steps={recipe.sft.warmup_steps} >= the {len(plan)} steps: the learning "
             "rate never reaches sft.lr")  # fmt: skip


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True) if path.is_file() else []


def _say(log: bool, text: str) -> None:
    if log:
        print(text, flush=True)
