"""One RL step's rollouts as the learner takes them: a right-padded `TrainBatch` (what crosses the Ray
boundary), its micro-batches by a token budget, and each micro-batch packed into one row for the forward.

Packing (`pack_rows`): a micro-batch's sequences are laid end to end with no padding, each attending only to
itself (`rlvr.model.attention.Packing`, the path SFT's packed rows take). With `share_prompt` the n responses
of a group follow one copy of their prompt and attend to it: the prompt is computed once instead of n times
(the Prefix-Grouper idea, Liu et al. 2025, arXiv 2506.05433). Its positions' gradient is then the sum over the
n responses, which is what n copies would get, so the loss and gradient are those of the unshared batch.
`PackedRows.where` maps every token of the padded rows to its place in the packed row, so the learner's
results go back to the padded (B, L−1) layout that the loss, the metrics and routing replay use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rlvr.model.attention import Packing, Run
from rlvr.routing_replay import pack_routing
from rollout.types import Rollout


@dataclass
class TrainBatch:
    """Rollouts as right-padded tensors. Position t of the `*_BT1` fields scores token t+1 of `input_ids`."""

    input_ids: Tensor  # (B, L) prompt + response, right-padded
    attention_mask: Tensor  # (B, L) 1 = real token
    response_mask: Tensor  # (B, L-1) 1 where the predicted token is a response token
    old_logp: Tensor  # (B, L-1) PPO's old-policy logprobs of response tokens, 0 elsewhere
    advantages: Tensor  # (B,) one per sequence (each of its tokens) or (B, L-1) per token, 0 off-response
    behaviour_logp: Tensor  # (B, L-1) the rollout engine's logprobs, as sampled (old_logp starts as these)
    ref_logp: Tensor | None = None  # (B, L-1) the frozen reference policy's, when algorithm.kl_coef > 0
    routing: Tensor | None = None  # (B, L, MoE layers, K) int16 the engine's experts, -1 where none (R3)

    def rows(self, index: Tensor) -> TrainBatch:
        return TrainBatch(*(None if t is None else t[index] for t in self.__dict__.values()))

    def to(self, device: torch.device) -> TrainBatch:
        return TrainBatch(*(None if t is None else t.to(device) for t in self.__dict__.values()))

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def make_batch(rollouts: list[Rollout], advantages: Tensor, pad_token_id: int = 0) -> TrainBatch:
    """Packs rollouts (prompt + response, behaviour logprobs) into a right-padded `TrainBatch`.

    `advantages` is (B,) per sequence, or (B, R) per response token (R ≥ the longest response; token t of
    response i at [i, t]), which is placed at the response's positions of the batch."""
    length = max(len(r.prompt_ids) + len(r.response_ids) for r in rollouts)
    batch = len(rollouts)
    ids = torch.full((batch, length), pad_token_id, dtype=torch.long)
    attention = torch.zeros(batch, length, dtype=torch.long)
    response = torch.zeros(batch, length - 1)
    old = torch.zeros(batch, length - 1)
    per_token = advantages.ndim == 2
    placed = torch.zeros(batch, length - 1) if per_token else advantages.float()
    for i, r in enumerate(rollouts):
        p, n = len(r.prompt_ids), len(r.response_ids)
        ids[i, : p + n] = torch.tensor(r.prompt_ids + r.response_ids)
        attention[i, : p + n] = 1
        response[i, p - 1 : p - 1 + n] = 1
        old[i, p - 1 : p - 1 + n] = torch.tensor(r.logprobs)
        if per_token:
            placed[i, p - 1 : p - 1 + n] = advantages[i, :n].float()
    routing = pack_routing(rollouts, length)
    return TrainBatch(ids, attention, response, old, placed, old.clone(), routing=routing)


def prompt_lengths(batch: TrainBatch) -> list[int]:
    """Each row's prompt length: the position after the first predicted response token's, or the whole row
    where there is no response token."""
    has = batch.response_mask.bool().any(1)
    first = batch.response_mask.argmax(1) + 1
    return torch.where(has, first, batch.attention_mask.sum(1)).tolist()


def prompt_groups(batch: TrainBatch, share_prompt: bool) -> list[list[int]]:
    """Row indices by unit of packing: runs of consecutive rows with the same prompt when `share_prompt`,
    else one row each."""
    if not share_prompt:
        return [[i] for i in range(len(batch))]
    prompts = prompt_lengths(batch)
    groups: list[list[int]] = []
    for i, p in enumerate(prompts):
        last = groups[-1][-1] if groups else None
        same = (
            last is not None
            and prompts[last] == p
            and torch.equal(batch.input_ids[last, :p], batch.input_ids[i, :p])
        )
        if same:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def packed_length(batch: TrainBatch, group: list[int], share_prompt: bool) -> int:
    """Tokens a group takes in a packed row: its prompt once and every response when shared, else each
    sequence whole."""
    lengths = batch.attention_mask[group].sum(1)
    if not share_prompt or len(group) == 1:
        return int(lengths.sum())
    p = prompt_lengths(batch.rows(torch.tensor(group[:1])))[0]
    return p + int((lengths - p).sum())


def micro_batches(batch: TrainBatch, max_tokens: int, share_prompt: bool) -> list[Tensor]:
    """Row indices of each micro-batch: units (`prompt_groups`) packed in order to at most `max_tokens`
    packed tokens each (a unit over the budget goes alone). Units whose advantages are all 0 and units with
    a learning signal are never mixed, so the former can run forward only; signal first."""
    signal = (batch.advantages if batch.advantages.ndim == 2 else batch.advantages[:, None]).ne(0)
    signal = (signal & batch.response_mask.bool()).any(1)
    units = prompt_groups(batch, share_prompt)
    out: list[Tensor] = []
    for wanted in (True, False):
        current, tokens = [], 0
        for unit in units:
            if bool(signal[unit].any()) != wanted:
                continue
            size = packed_length(batch, unit, share_prompt)
            if current and tokens + size > max_tokens:
                out.append(torch.tensor(current))
                current, tokens = [], 0
            current, tokens = current + unit, tokens + size
        if current:
            out.append(torch.tensor(current))
    return out


@dataclass
class PackedRows:
    """A micro-batch's sequences in one row."""

    input_ids: Tensor  # (1, S)
    packing: Packing
    where: Tensor  # (b, L) int64: position in the packed row of each token of the padded rows, 0 at padding
    routing: Tensor | None  # (1, S, MoE layers, K) int16: the engine's experts, −1 where none (R3)


def pack_rows(batch: TrainBatch, share_prompt: bool) -> PackedRows:
    """Lays `batch`'s sequences end to end (see the module docstring); a shared prompt is the prefix run
    of its group's responses, which continue its positions."""
    lengths, prompts = batch.attention_mask.sum(1).tolist(), prompt_lengths(batch)
    where = torch.zeros_like(batch.input_ids)
    pieces, runs, positions, cursor = [], [], [], 0

    def place(i: int, a: int, b: int, prefix: tuple[int, int] = (0, 0)) -> None:
        nonlocal cursor
        if b <= a:
            return
        pieces.append(batch.input_ids[i, a:b])
        positions.append(torch.arange(a, b))
        runs.append(Run(cursor, cursor + b - a, True, *prefix))
        where[i, a:b] = torch.arange(cursor, cursor + b - a)
        cursor += b - a

    for group in prompt_groups(batch, share_prompt):
        if len(group) == 1:
            place(group[0], 0, lengths[group[0]])
            continue
        p, start = prompts[group[0]], cursor
        place(group[0], 0, p)
        for i in group:
            where[i, :p] = where[group[0], :p]
            place(i, p, lengths[i], (start, start + p))
    ids = torch.cat(pieces)[None]
    packing = Packing([runs], torch.cat(positions)[None], torch.ones_like(ids, dtype=torch.bool))
    return PackedRows(ids, packing, where, _packed_routing(batch, where, ids.shape[1]))


def _packed_routing(batch: TrainBatch, where: Tensor, length: int) -> Tensor | None:
    """The engine's routing at the packed positions; a shared prompt takes its group's first row's."""
    if batch.routing is None:
        return None
    packed = batch.routing.new_full((length, *batch.routing.shape[2:]), -1)
    for i in reversed(range(len(batch))):  # the first row of a group writes last
        valid = batch.attention_mask[i].bool()
        packed[where[i][valid]] = batch.routing[i][valid]
    return packed[None]


def unpack(packed_N: Tensor, mask_BT: Tensor, fill: float = 0.0) -> Tensor:
    """(N,) values of the True positions of `mask_BT` (row-major) → (B, T), `fill` elsewhere; keeps the
    gradient."""
    out = torch.full(mask_BT.shape, fill, dtype=packed_N.dtype, device=packed_N.device)
    return out.masked_scatter(mask_BT, packed_N)
