"""SFT data as the Megrez2 report trains on it (§4.2.1): conversations rendered through the model's chat
template, samples packed into fixed-length rows, a loss weight per token for the turn-level loss.

    conversation rows      {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}
                           (the conversational format of TRL's SFTTrainer); loss on every assistant turn
    prompt-set rows        the prompt schema (`rlvr.data`): the prompt as training formats it, then the
                           worked solution (`meta.solution`, else the answer) as the one assistant turn

A sample is (token ids, the turn each target token belongs to). `epoch_steps` packs an epoch best-fit into
rows of `seq_len` and cuts it into optimiser steps of `batch_tokens // seq_len` rows; `lay_out` lays a step's
samples into rows: packed (a document id per token so no sample sees another) or padded (one sample a row).
Both give the learner the same samples with the same weights, so they make the same update.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import torch
from torch import Tensor

ROLES = ("system", "user", "assistant")


@dataclass
class Sample:
    """One conversation as token ids. `turn[t]` is the assistant turn (0, 1, ...) that token t belongs to as
    a prediction target (it is scored from position t − 1), −1 where token t is not trained on."""

    ids: list[int]
    turn: list[int]
    origin: str = ""  # where it came from, for messages: "file.jsonl line 4"

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class SFTBatch:
    """Rows for one learner step; crosses the Ray boundary. Position t of `loss_weight` scores token t+1."""

    input_ids: Tensor  # (R, T) int64
    document_ids: Tensor  # (R, T) int64: one id per sample within a row, -1 padding
    loss_weight: Tensor  # (R, T-1) float: the token's weight in the loss, 0 where not trained on

    def rows(self, index: Tensor) -> SFTBatch:
        return SFTBatch(self.input_ids[index], self.document_ids[index], self.loss_weight[index])

    def __len__(self) -> int:
        return self.input_ids.shape[0]


@dataclass
class Problems:
    """What reading and rendering a data set skipped, row by row (a malformed row never stops the rest)."""

    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    examples: list[str] = field(default_factory=list)  # the first few, naming the row
    truncated: int = 0  # kept, cut to sft.seq_len

    def add(self, reason: str, where: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.note(f"{where}: {reason}")

    def note(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)

    def summary(self) -> str:
        cut = f"{self.truncated} truncated to sft.seq_len and kept; " if self.truncated else ""
        if not self.dropped:
            return f"{cut}no rows dropped"
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items()))
        return f"{cut}dropped {sum(self.dropped.values())} rows ({counts}); e.g. " + "; ".join(self.examples)


def check_messages(messages: Any) -> str | None:
    """Why `messages` is not a trainable conversation, or None: a list of {role, content} with known roles,
    string contents and at least one assistant turn."""
    if not isinstance(messages, list) or not messages:
        return "messages is not a non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            return f"messages[{i}] is not an object with a string content"
        if m.get("role") not in ROLES:
            return f"messages[{i}] has unknown role {m.get('role')!r} (known: {', '.join(ROLES)})"
    if not any(m["role"] == "assistant" for m in messages):
        return "no assistant turn"
    if messages[0]["role"] == "assistant":
        return "starts with an assistant turn (no user or system turn to condition it on)"
    return None


def render(tokenizer: Any, messages: list[dict[str, str]]) -> Sample:
    """Token ids of a conversation through the tokenizer's chat template, and the assistant tokens to learn.

    Each assistant turn's targets run from the end of the template's generation prompt through the turn's
    end-of-turn token (what generation stops at); what the template adds after it is context only.
    ValueError when the template does not render the conversation as a sequence of growing prefixes."""
    inner = tokenizer.inner
    ids = _template_ids(inner, messages, generation_prompt=False)
    turn = [-1] * len(ids)
    stops = set(tokenizer.stop_token_ids)
    for k, i in enumerate(j for j, m in enumerate(messages) if m["role"] == "assistant"):
        before = _template_ids(inner, messages[:i], generation_prompt=True)
        through = _template_ids(inner, messages[: i + 1], generation_prompt=False)
        start, end = len(before), len(through)
        if ids[:start] != before or ids[:end] != through or start >= end:
            raise ValueError(f"the chat template does not render turn {i} as a prefix of the conversation")
        stop = next((t for t in range(start, end) if ids[t] in stops), end - 1)
        for t in range(start, stop + 1):
            turn[t] = k
    return Sample(ids, turn)


def _template_ids(inner: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    out = inner.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def prompt_solution_sample(prompt_ids: list[int], solution_ids: list[int], eos: int) -> Sample:
    """A prompt-set row: the formatted prompt, then the solution and EOS as the one trained turn."""
    ids = [*prompt_ids, *solution_ids, eos]
    return Sample(ids, [-1] * len(prompt_ids) + [0] * (len(solution_ids) + 1))


def read_conversations(path: Path, problems: Problems) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of each row of a JSON Lines file whose `messages` are a trainable conversation;
    every other line is counted in `problems` with its line number and reason."""
    rows = []
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.add(f"not JSON ({exc.msg})", where)
                continue
            reason = check_messages(row.get("messages")) if isinstance(row, dict) else "not a JSON object"
            if reason:
                problems.add(reason, where)
            else:
                rows.append((number, row))
    return rows


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return path.open(encoding="utf-8-sig")


def is_conversation_file(path: Path) -> bool:
    """Whether `path` is JSON Lines whose first parsable row has `messages` (else it is a prompt set)."""
    if not path.is_file() or not path.name.endswith((".jsonl", ".jsonl.gz")):
        return False
    with _open_text(path) as f:
        for line in itertools.islice(
            (x for x in f if x.strip()), 20
        ):  # a malformed first line is not the file
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            return isinstance(row, dict) and "messages" in row
    return False


def fit_length(
    samples: list[Sample], seq_len: int, overlong: Literal["drop", "truncate"], problems: Problems
) -> list[Sample]:
    """Samples that fit a row of `seq_len` tokens: a longer one is dropped, or cut to `seq_len` (it then
    keeps what it has of its turns; counted as truncated). Samples with no target (left) are dropped."""
    kept = []
    for i, s in enumerate(samples):
        where = s.origin or f"sample {i}"
        if len(s) > seq_len and overlong == "drop":
            problems.add(f"longer than sft.seq_len={seq_len}", f"{where} ({len(s)} tokens)")
            continue
        if len(s) > seq_len:
            problems.truncated += 1
            problems.note(f"{where}: {len(s)} tokens, truncated to sft.seq_len={seq_len}")
            s = Sample(s.ids[:seq_len], s.turn[:seq_len], s.origin)
        if max(s.turn[1:], default=-1) < 0:
            problems.add("no assistant token to learn", where)
            continue
        kept.append(s)
    return kept


def loss_weights(turn: Sequence[int], loss: Literal["turn", "token"]) -> list[float]:
    """Each target token's weight before the global normalisation: 1 for `token`; 1 / (tokens in its turn)
    for `turn`, so that the weights of one turn sum to 1 (Megrez2 report §4.2.1: each turn's loss is its
    own token mean). The loss is Σ w·(−log p) / Σ w over the step, Σ w being the number of target tokens or
    of turns."""
    if loss == "token":
        return [1.0 if k >= 0 else 0.0 for k in turn]
    sizes: dict[int, int] = {}
    for k in turn:
        sizes[k] = sizes.get(k, 0) + 1
    return [1.0 / sizes[k] if k >= 0 else 0.0 for k in turn]


def best_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of sample indices, each summing to at most `capacity` tokens: best-fit decreasing (each sample,
    longest first, goes to the fullest bin it still fits in). Every length must be ≤ capacity."""
    free: list[tuple[int, int]] = []  # (free tokens, bin), sorted
    bins: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        at = bisect.bisect_left(free, (lengths[i], -1))
        if at == len(free):
            bins.append([i])
            bisect.insort(free, (capacity - lengths[i], len(bins) - 1))
        else:
            room, b = free.pop(at)
            bins[b].append(i)
            bisect.insort(free, (room - lengths[i], b))
    return bins


def rows_batch(
    rows: list[list[Sample]], length: int, loss: Literal["turn", "token"], pad_id: int
) -> SFTBatch:
    """Lays each row's samples one after another (document ids 0, 1, ...) and pads to `length`."""
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    docs = torch.full((len(rows), length), -1, dtype=torch.long)
    weight = torch.zeros(len(rows), length)
    for r, samples in enumerate(rows):
        at = 0
        for d, s in enumerate(samples):
            ids[r, at : at + len(s)] = torch.tensor(s.ids)
            docs[r, at : at + len(s)] = d
            weight[r, at : at + len(s)] = torch.tensor(loss_weights(s.turn, loss))
            weight[r, at] = 0.0  # a sample's first token is never predicted from the previous sample
            at += len(s)
    return SFTBatch(ids, docs, weight[:, 1:])


def epoch_steps(lengths: Sequence[int], batch_tokens: int, seq_len: int, seed: int) -> list[list[int]]:
    """One epoch's optimiser steps as sample indices: every sample once. The epoch is packed best-fit into
    rows of `seq_len` (so rows are nearly full), the rows are put in a seeded order, and each step takes
    `batch_tokens // seq_len` of them (at least one). Every length must be ≤ seq_len."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    rng.shuffle(order)  # ties in length are broken by this order, so each epoch's rows differ
    rows = [[order[i] for i in b] for b in best_fit([lengths[i] for i in order], seq_len)]
    rng.shuffle(rows)
    per_step = max(1, batch_tokens // seq_len)
    return [sum(rows[i : i + per_step], []) for i in range(0, len(rows), per_step)]


def lay_out(
    samples: list[Sample], seq_len: int, packing: bool, loss: Literal["turn", "token"], pad_id: int
) -> SFTBatch:
    """One step's samples as rows: packed best-fit into rows of `seq_len`, or one a row padded to the
    longest. The same samples get the same weights either way."""
    if packing:
        rows = [[samples[i] for i in sorted(b)] for b in best_fit([len(s) for s in samples], seq_len)]
        return rows_batch(rows, seq_len, loss, pad_id)
    return rows_batch([[s] for s in samples], max(map(len, samples)), loss, pad_id)


def pad_rows(batch: SFTBatch, multiple: int) -> SFTBatch:
    """Adds empty rows (all padding, weight 0) so the row count divides by `multiple` (ranks that gather and
    reduce in lockstep need the same number of micro-batches)."""
    missing = -len(batch) % multiple
    if not missing:
        return batch
    R, T = batch.input_ids.shape
    return SFTBatch(
        torch.cat([batch.input_ids, batch.input_ids.new_zeros(missing, T)]),
        torch.cat([batch.document_ids, batch.document_ids.new_full((missing, T), -1)]),
        torch.cat([batch.loss_weight, batch.loss_weight.new_zeros(missing, T - 1)]),
    )
