"""The learner's forward without the logits tensor, packed, with each group's prompt shared: the same numbers.

Chunked log-probs equal the full-logits computation to fp32 round-off (forward and gradient, T ≠ 1 and
top_p < 1); a packed micro-batch gives the padded batch's loss and gradient; a shared prompt gives the
unshared computation's log-probs, loss and gradient (fp64)."""

from __future__ import annotations

import pytest
import torch

from rlvr.algorithm import entropy_from_logits, group_advantages, ppo_loss
from rlvr.batch import TrainBatch, make_batch, micro_batches, pack_rows, prompt_groups
from rlvr.learner import Learner, LearnerSpec
from rlvr.model.megrez2 import Megrez2Config
from rlvr.model.sampling import linear_logprobs, processed_logits, sampled_logprobs
from rollout.types import Rollout


def test_chunked_logprobs_equal_the_full_logits_forward_and_gradient() -> None:
    torch.manual_seed(0)
    h = (torch.randn(45, 24) * 0.3).requires_grad_()
    w = (torch.randn(70, 24) * 0.3).requires_grad_()
    y = torch.randint(0, 70, (45,))
    g = torch.randn(45)
    for temperature, top_p in ((1.0, 1.0), (0.7, 0.8)):
        logp, entropy = linear_logprobs(h, w, y, temperature, top_p, chunk_size=8)
        keep = torch.isfinite(logp)
        (torch.where(keep, logp, 0.0) * g).sum().backward()
        got = h.grad.clone(), w.grad.clone()
        h.grad = w.grad = None
        logits = h @ w.T
        ref = sampled_logprobs(logits, y, temperature, top_p)
        (torch.where(keep, ref, 0.0) * g).sum().backward()
        assert torch.equal(keep, torch.isfinite(ref)) and (top_p == 1.0 or 0 < int(keep.sum()) < 45)
        torch.testing.assert_close(logp[keep], ref[keep], rtol=0, atol=1e-5)
        ref_entropy = entropy_from_logits(processed_logits(logits.detach(), temperature, top_p))
        torch.testing.assert_close(entropy, ref_entropy, rtol=0, atol=1e-5)
        torch.testing.assert_close(got[0], h.grad, rtol=0, atol=1e-5)
        torch.testing.assert_close(got[1], w.grad, rtol=0, atol=1e-5)
        h.grad = w.grad = None


def group_batch(vocab: int, groups: int = 3, n: int = 4, seed: int = 0) -> TrainBatch:
    """`groups` prompts of different lengths × n responses of different lengths, random tokens."""
    g = torch.Generator().manual_seed(seed)
    rollouts = []
    for p in range(groups):
        prompt = torch.randint(3, vocab, (3 + 2 * p,), generator=g).tolist()
        for s in range(n):
            response = torch.randint(3, vocab, (2 + (s * 3 + p) % 5,), generator=g).tolist()
            rollouts.append(
                Rollout(p, s, prompt, response, (-torch.rand(len(response), generator=g)).tolist(), "stop")
            )
    rewards = torch.tensor([1.0 if (i * 7) % 3 == 0 else -1.0 for i in range(len(rollouts))])
    return make_batch(rollouts, group_advantages(rewards, group_size=n))


def learner(share: bool, temperature: float = 0.8, top_p: float = 0.9) -> Learner:
    algorithm = {"share_prompt": share, "micro_batch_tokens": 10_000}
    rollout = {"temperature": temperature, "top_p": top_p}
    return Learner(LearnerSpec.create(Megrez2Config.preset("tiny"), {}, algorithm, rollout, seed=0))


def scored_loss(model_owner: Learner, batch: TrainBatch, padded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π (B, L−1), the PPO loss) by the learner's packed path, or by the full-logits padded forward."""
    r = model_owner.spec.rollout
    if padded:
        logits = model_owner.model(batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
        logp = sampled_logprobs(logits, batch.input_ids[:, 1:], r.temperature, r.top_p)
        logp = torch.where(batch.response_mask.bool(), logp, 0.0)
    else:
        logp, _ = model_owner._scored(model_owner.model, batch)
    mask = batch.response_mask.bool() & torch.isfinite(logp)
    loss, _ = ppo_loss(logp, batch.old_logp, batch.advantages, mask, clip_low=0.2, clip_high=0.2)
    return logp, loss


def gradients(owner: Learner, batch: TrainBatch, padded: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
    owner.model.zero_grad(set_to_none=True)
    logp, loss = scored_loss(owner, batch, padded)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in owner.model.named_parameters() if p.grad is not None}
    return logp.detach(), loss.detach(), grads


@pytest.mark.parametrize("share", [False, True], ids=["packed", "packed-shared-prompt"])
def test_a_packed_micro_batch_makes_the_padded_batchs_loss_and_gradient(share: bool) -> None:
    batch = group_batch(Megrez2Config.preset("tiny").vocab_size)
    owner = learner(share)
    got = gradients(owner, batch, padded=False)
    want = gradients(owner, batch, padded=True)
    mask = batch.response_mask.bool() & torch.isfinite(want[0])
    assert 0 < int(mask.sum()) < int(batch.response_mask.sum())  # top_p 0.9 leaves some tokens out
    assert torch.equal(torch.isfinite(got[0]), torch.isfinite(want[0]))
    torch.testing.assert_close(got[0][mask], want[0][mask], rtol=0, atol=2e-5)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=2e-6)
    assert got[2].keys() == want[2].keys()
    for name, value in want[2].items():
        torch.testing.assert_close(got[2][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_a_shared_prompt_equals_the_unshared_computation_in_fp64() -> None:
    batch = group_batch(Megrez2Config.preset("tiny").vocab_size, seed=1)
    shared, unshared = learner(True), learner(False)
    for owner in (shared, unshared):
        owner.model.double()
    batch.old_logp = batch.old_logp.double()
    got, want = gradients(shared, batch, False), gradients(unshared, batch, False)
    mask = batch.response_mask.bool() & torch.isfinite(want[0])
    torch.testing.assert_close(got[0][mask], want[0][mask], rtol=0, atol=1e-10)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-10)
    for name, value in want[2].items():
        torch.testing.assert_close(got[2][name], value, rtol=0, atol=1e-10, msg=name)
    # and the shared row is shorter: each prompt once
    assert pack_rows(batch, True).input_ids.shape[1] < pack_rows(batch, False).input_ids.shape[1]


def test_packing_lays_groups_out_once_and_micro_batches_keep_to_the_budget() -> None:
    batch = group_batch(1000)
    assert prompt_groups(batch, True) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    packed = pack_rows(batch, True)
    lengths = batch.attention_mask.sum(1)
    prompts = [3, 5, 7]
    assert packed.input_ids.shape[1] == sum(prompts) + int(lengths.sum()) - 4 * sum(prompts)
    for i in range(len(batch)):  # every real token maps to its own token in the packed row
        real = batch.attention_mask[i].bool()
        assert torch.equal(packed.input_ids[0, packed.where[i][real]], batch.input_ids[i][real])
        positions = packed.packing.positions[0, packed.where[i][real]]
        assert positions.tolist() == list(range(int(lengths[i])))  # a response continues its prompt
    batch.advantages[4:8] = 0.0  # group 1 has no signal: it never shares a micro-batch with the others
    for budget in (1, 30, 10_000):
        micros = micro_batches(batch, budget, share_prompt=True)
        assert sorted(torch.cat(micros).tolist()) == list(range(12))
        assert any(set(m.tolist()) == {4, 5, 6, 7} for m in micros)
        for m in micros:
            if len(prompt_groups(batch.rows(m), True)) > 1:
                assert pack_rows(batch.rows(m), True).input_ids.shape[1] <= budget


def test_the_plans_activation_estimate_matches_what_autograd_saves() -> None:
    # `rlvr train --dry-run` says what a micro-batch costs: its estimate against the bytes of every tensor
    # the forward saves for backward (each storage once, parameters left out)
    from rlvr.model.megrez2 import Megrez2ForCausalLM, TokenScore
    from rlvr.plan import activation_bytes

    config = Megrez2Config.preset("tiny")
    model, tokens = Megrez2ForCausalLM(config), 256
    ids = torch.randint(0, config.vocab_size, (1, tokens))
    saved: dict[int, int] = {}

    def keep(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    score = TokenScore(torch.arange(tokens - 1), ids[0, 1:])
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(ids, document_ids=(torch.arange(tokens) // 64)[None], score=score)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    measured = sum(size for ptr, size in saved.items() if ptr not in params)
    assert 0.7 < measured / activation_bytes(config, tokens, 4, checkpointing=False) < 1.3
