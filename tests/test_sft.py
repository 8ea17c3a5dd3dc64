"""SFT as the report does it: packed rows whose samples cannot see each other, the turn-level loss, the same
update packed or padded, conversations through a real chat template, bad rows counted, exact resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from rlvr.algorithm import sft_loss
from rlvr.config import RecipeError, SFTConfig, load_recipe
from rlvr.learner import Learner, LearnerSpec
from rlvr.model.attention import Packing, document_positions, packed_attention
from rlvr.model.megrez2 import Megrez2Config, Megrez2ForCausalLM
from rlvr.model.sampling import token_logprobs
from rlvr.optim import lr_factor
from rlvr.sft_data import (
    Problems,
    Sample,
    best_fit,
    epoch_steps,
    fit_length,
    is_conversation_file,
    lay_out,
    loss_weights,
    pad_rows,
    read_conversations,
    render,
)
from rlvr.tokenizer import HFTokenizer
from tests.llama_fixtures import chatml_tokenizer

REPO = Path(__file__).resolve().parents[1]


def random_samples(lengths: list[int], vocab: int, seed: int = 0, prompt: int = 3) -> list[Sample]:
    rng = random.Random(seed)
    return [
        Sample([rng.randrange(4, vocab) for _ in range(n)], [-1] * prompt + [0] * (n - prompt))
        for n in lengths
    ]


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> HFTokenizer:
    folder = tmp_path_factory.mktemp("chatml")
    chatml_tokenizer().save_pretrained(str(folder))
    return HFTokenizer(folder)


def test_a_packed_sample_scores_as_if_alone_fp64() -> None:
    torch.manual_seed(0)
    model = Megrez2ForCausalLM(Megrez2Config.preset("tiny")).double().eval()
    samples = random_samples([7, 12, 5, 9, 3, 11], model.config.vocab_size)
    batch = lay_out(samples, 30, packing=True, loss="turn", pad_id=0)
    assert len(batch) == 2 and (batch.document_ids == -1).any()  # best fit: 47 tokens in 2 rows of 30
    with torch.no_grad():
        packed = model(batch.input_ids, document_ids=batch.document_ids).logits
        worst = 0.0
        for r in range(len(batch)):
            for d in batch.document_ids[r].unique().tolist():
                if d < 0:
                    continue
                at = (batch.document_ids[r] == d).nonzero().flatten()
                alone = model(batch.input_ids[r : r + 1, at]).logits[0]
                worst = max(worst, float((alone.log_softmax(-1) - packed[r, at].log_softmax(-1)).abs().max()))
    # fp64 everywhere except the router's scores, which Megrez2 keeps in fp32 by design
    assert worst < 1e-8, worst
    # and across a sample boundary a token does see its own sample only: without document ids it differs
    with torch.no_grad():
        plain = model(batch.input_ids).logits
    assert float((plain - packed).abs().max()) > 1e-3


def test_positions_restart_per_sample_and_attention_runs_per_sample() -> None:
    docs = torch.tensor([[0, 0, 0, 1, 1, 2, -1, -1], [0, 0, 0, 0, 0, 0, 0, 1]])
    assert document_positions(docs).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1], [0, 1, 2, 3, 4, 5, 6, 0]]
    segments = Packing.from_documents(docs).runs
    assert [[run[:3] for run in row] for row in segments] == [
        [(0, 3, True), (3, 5, True), (5, 6, True), (6, 8, False)],
        [(0, 7, True), (7, 8, True)],
    ]
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 8, 16, dtype=torch.float64) for _ in range(3))
    out = packed_attention(q, k[:, :2], v[:, :2], segments, 0.25)  # grouped-query: 4 heads on 2 kv heads
    kv = k[:, :2].repeat_interleave(2, 1), v[:, :2].repeat_interleave(2, 1)
    same = docs[:, :, None] == docs[:, None, :]
    mask = (same & torch.ones(8, 8, dtype=torch.bool).tril())[:, None]
    mask = mask | torch.eye(8, dtype=torch.bool)  # the masked reference needs a key for padding queries
    reference = torch.nn.functional.scaled_dot_product_attention(q, *kv, attn_mask=mask, scale=0.25)
    real = (docs >= 0)[:, None, :, None]
    assert torch.allclose(torch.where(real, out, 0), torch.where(real, reference, 0), atol=1e-12)
    assert not out[0, :, 6:].any()  # padding gives zeros


def test_best_fit_packs_every_sample_once_within_capacity() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(1, 100) for _ in range(300)]
    bins = best_fit(lengths, 128)
    assert sorted(i for b in bins for i in b) == list(range(300))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    assert len(bins) <= 1.1 * sum(lengths) / 128 + 1  # near the lower bound
    steps = epoch_steps(lengths, 1024, 128, seed=3)
    assert sorted(i for s in steps for i in s) == list(range(300))
    assert all(sum(lengths[i] for i in s) <= 1024 for s in steps)
    assert len(steps) == -(-len(bins) // 8)  # 8 nearly full rows a step
    assert steps != epoch_steps(lengths, 1024, 128, seed=4)  # each epoch its own order


def test_turn_and_token_losses_follow_their_formulas() -> None:
    # two turns: 2 tokens and 4 tokens, nll per token below
    turn = [-1, 0, 0, -1, 1, 1, 1, 1]
    nll = torch.tensor([0.0, 1.0, 3.0, 0.0, 2.0, 2.0, 2.0, 6.0])
    w_turn = torch.tensor(loss_weights(turn, "turn"))
    w_token = torch.tensor(loss_weights(turn, "token"))
    turn_loss = sft_loss(-nll, w_turn, w_turn.sum())
    token_loss = sft_loss(-nll, w_token, w_token.sum())
    assert float(turn_loss) == pytest.approx(((1 + 3) / 2 + (2 + 2 + 2 + 6) / 4) / 2)  # 2.5
    assert float(token_loss) == pytest.approx((1 + 3 + 2 + 2 + 2 + 6) / 6)  # 2.666...
    assert float(w_turn.sum()) == 2 and float(w_token.sum()) == 6


def learner(seed: int = 0) -> Learner:
    spec = LearnerSpec.create(Megrez2Config.preset("tiny"), seed=seed)
    out = Learner(spec)
    out.start_sft(SFTConfig(lr=1e-3, warmup_steps=0, micro_batch_tokens=64), total_steps=4)
    return out


@pytest.mark.parametrize("loss", ["turn", "token"])
def test_packed_and_padded_make_the_same_update(loss: str) -> None:
    samples = random_samples([20, 7, 31, 12, 9, 26, 5], 200, seed=2)
    packed, padded = learner(), learner()
    before = {k: v.clone() for k, v in packed.model.state_dict().items()}
    a = packed.sft_step(lay_out(samples, 64, packing=True, loss=loss, pad_id=0))
    b = padded.sft_step(lay_out(samples, 64, packing=False, loss=loss, pad_id=0))
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["grad_norm"] == pytest.approx(b["grad_norm"])
    moved = max(float((packed.model.state_dict()[k] - before[k]).abs().max()) for k in before)
    assert moved > 1e-4  # the step did update
    # the same gradient to fp32 round-off (Adam's first step divides by |g|, so compare before it)
    grads = [
        (p.grad, q.grad) for p, q in zip(packed.model.parameters(), padded.model.parameters(), strict=True)
    ]
    scale = max(float(g.abs().max()) for g, _ in grads if g is not None)
    worst = max(float((g - h).abs().max()) for g, h in grads if g is not None)
    assert scale > 0 and worst < 1e-5 * scale, (worst, scale)


def test_empty_rows_added_for_ranks_change_nothing() -> None:
    samples = random_samples([20, 7, 31], 200, seed=5)
    batch = lay_out(samples, 64, packing=True, loss="turn", pad_id=0)
    a, b = learner().sft_step(batch)["loss"], learner().sft_step(pad_rows(batch, 4))["loss"]
    assert len(pad_rows(batch, 4)) == 4 and a == pytest.approx(b, rel=1e-6)


def test_cosine_schedule_warms_up_then_decays_to_the_floor() -> None:
    factors = [lr_factor(s, 2, 10, 0.1) for s in range(12)]
    assert factors[:3] == [0.5, 1.0, 1.0] and factors[10] == pytest.approx(0.1)
    assert all(x >= y for x, y in zip(factors[1:], factors[2:], strict=False))


def test_render_learns_each_assistant_turn_through_its_end_token(chat_tokenizer: HFTokenizer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "and 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    sample = render(chat_tokenizer, messages)
    inner = chat_tokenizer.inner
    learned = [
        inner.decode([t for t, k in zip(sample.ids, sample.turn, strict=True) if k == j]) for j in (0, 1)
    ]
    assert learned == ["2<|im_end|>", "4<|im_end|>"]
    assert inner.decode(sample.ids).count("<|im_start|>") == 5


def test_bad_rows_are_counted_by_line_and_the_rest_is_kept(tmp_path: Path) -> None:
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    rows = [
        good,
        {"messages": [{"role": "user", "content": "no answer"}]},
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "b"}]},
        "not an object",
        {"messages": [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "hi"}]},
    ]
    path = tmp_path / "conv.jsonl"
    path.write_text("{broken\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    assert is_conversation_file(path)  # a malformed first line does not make it a prompt set
    problems = Problems()
    kept = read_conversations(path, problems)
    assert [line for line, _ in kept] == [2] and sum(problems.dropped.values()) == 5
    text = problems.summary()
    assert (
        "line 1: not JSON" in text and "line 3: no assistant turn" in text and "unknown role 'robot'" in text
    )
    assert problems.dropped["starts with an assistant turn (no user or system turn to condition it on)"] == 1
    long = random_samples([10, 40, 8], 100)
    long[1].origin = "conv.jsonl line 7"
    cut = Problems()
    assert [len(s) for s in fit_length(long, 16, "drop", cut)] == [10, 8]
    assert "conv.jsonl line 7 (40 tokens): longer than sft.seq_len=16" in cut.summary()
    kept_cut = Problems()
    assert [len(s) for s in fit_length(long, 16, "truncate", kept_cut)] == [10, 16, 8]
    assert kept_cut.truncated == 1 and not kept_cut.dropped  # truncated samples are kept, not dropped
    only_prompt = [Sample([5] * 20, [-1] * 18 + [0] * 2)]  # its one turn lies past the cut
    gone = Problems()
    assert fit_length(only_prompt, 16, "truncate", gone) == [] and gone.dropped == {
        "no assistant token to learn": 1
    }


def sft_recipe(tmp_path: Path, data: Path, tokenizer: Path | None, *extra: str) -> object:
    return load_recipe(
        REPO / "recipes/tiny.yaml",
        [
            f"run.output_dir={tmp_path / 'run'}",
            *([f"model.tokenizer={tokenizer}"] if tokenizer else []),
            f"sft.data={data}",
            "sft.steps=4",
            "sft.batch_tokens=200",
            "sft.seq_len=128",
            "sft.heldout=2",
            "sft.eval_every=2",
            "sft.save_every=2",
            "sft.lr=1e-3",
            "sft.warmup_steps=1",
            *extra,
        ],
    )


def conversations(path: Path, n: int) -> Path:
    rng = random.Random(0)
    with path.open("w") as f:
        for i in range(n):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            turns = [{"role": "user", "content": f"{a}+{b}?"}, {"role": "assistant", "content": f"{a + b}"}]
            if i % 3 == 0:
                turns += [
                    {"role": "user", "content": "times 2?"},
                    {"role": "assistant", "content": f"{2 * (a + b)}"},
                ]
            f.write(json.dumps({"messages": turns}) + "\n")
        f.write('{"messages": [{"role": "user", "content": "nothing to learn"}]}\n')
    return path


def test_rlvr_sft_trains_conversations_and_resumes_exactly(
    tmp_path: Path, chat_tokenizer: HFTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    from rlvr import sft
    from rlvr.actors import LearnerGroup

    tok = tmp_path / "tok"
    chat_tokenizer.save(tok)
    data = conversations(tmp_path / "conv.jsonl", 40)
    whole = sft.run_sft(sft_recipe(tmp_path / "a", data, tok), log=False)
    rows = [json.loads(x) for x in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["loss"] < rows[0]["loss"]
    assert rows[1]["heldout_loss"] > 0 and rows[0]["padding"] < 0.5
    done = json.loads((whole / "sft_done.json").read_text())
    assert done["dropped"] == {"no assistant turn": 1} and sft.is_done(sft_recipe(tmp_path / "a", data, tok))
    assert not sft.is_done(sft_recipe(tmp_path / "a", data, tok, "sft.lr=2e-3"))  # settings changed: stale

    # the same run, stopped after its step-2 checkpoint, then started again
    calls = {"n": 0}
    step = LearnerGroup.step

    def dies_at_step_3(self: LearnerGroup, method: str, batch: object) -> object:
        calls["n"] += method == "sft_step"
        if calls["n"] == 3:
            raise KeyboardInterrupt("stopped")
        return step(self, method, batch)

    monkeypatch.setattr(LearnerGroup, "step", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        sft.run_sft(sft_recipe(tmp_path / "b", data, tok), log=False)
    ray.shutdown()
    monkeypatch.setattr(LearnerGroup, "step", step)
    assert (tmp_path / "b/run/sft/checkpoints/step_2/sft_state.json").exists()
    resumed = sft.run_sft(sft_recipe(tmp_path / "b", data, tok), log=False)
    a, b = Megrez2ForCausalLM.from_pretrained(whole), Megrez2ForCausalLM.from_pretrained(resumed)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert [json.loads(x)["step"] for x in (resumed / "metrics.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
        4,
    ]


def test_sft_refuses_what_it_cannot_train(tmp_path: Path, chat_tokenizer: HFTokenizer) -> None:
    from rlvr.sft import run_sft

    data = tmp_path / "conv.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    tok = tmp_path / "tok"
    chat_tokenizer.save(tok)
    with pytest.raises(RecipeError, match="0 usable samples.*no assistant turn"):
        run_sft(sft_recipe(tmp_path, data, tok), log=False)
    with pytest.raises(RecipeError, match="sft.data: prompt file .* does not exist"):
        run_sft(sft_recipe(tmp_path, tmp_path / "nope.jsonl", tok), log=False)
    with pytest.raises(RecipeError, match="chat template"):
        run_sft(sft_recipe(tmp_path, conversations(tmp_path / "c.jsonl", 5), None), log=False)


def test_token_logprobs_of_selected_positions_equal_the_full_head() -> None:
    torch.manual_seed(3)
    model = Megrez2ForCausalLM(Megrez2Config.preset("tiny")).eval()
    batch = lay_out(random_samples([9, 14, 6], 200, seed=9), 32, True, "token", 0)
    at = torch.zeros_like(batch.input_ids, dtype=torch.bool)
    at[:, :-1] = batch.loss_weight > 0
    with torch.no_grad():
        full = model(batch.input_ids, document_ids=batch.document_ids).logits[:, :-1]
        some = model(batch.input_ids, document_ids=batch.document_ids, logits_at=at).logits
    targets = batch.input_ids[:, 1:]
    expected = token_logprobs(full, targets)[at[:, :-1]]
    assert torch.allclose(token_logprobs(some, targets[at[:, :-1]]), expected, atol=1e-6)
