"""Packed micro-batches attended by their sequences' boundaries (learner.packed_attention: varlen): the boundaries
the packer writes, and on the tiny model the same log-probabilities, losses and gradients as the mask path and as
padded rows. On CPU the attention runs its per-sequence SDPA loop (torch's flash op is CUDA-only; the GPU check
scripts/gpu_checks.py 4 runs the op itself)."""

from __future__ import annotations

import copy

import pytest
import torch

from rlkit.algos.rl_objective import make_policy_loss
from rlkit.config import AlgorithmConfig, LearnerConfig
from rlkit.learner import varlen_attention
from rlkit.learner.base import pad_sequences
from rlkit.learner.logprobs import sequence_logprobs
from rlkit.learner.packing import attention_boundaries, boundaries, packed_micro_batches
from rlkit.learner.torch_learner import TorchLearner
from rlkit.world.model import build_tiny_model


def _batch():  # noqa: ANN202
    gen = torch.Generator().manual_seed(0)
    lengths, starts = [9, 3, 14, 6, 11, 5], [2, 1, 4, 2, 3, 2]
    batch = pad_sequences([torch.randint(1, 60, (n,), generator=gen).tolist() for n in lengths], starts, pad_id=0)
    batch.advantages = torch.randn(len(lengths), generator=gen)[:, None].expand_as(batch.loss_mask).contiguous()
    batch.old_logprobs = -3.0 + 0.3 * torch.randn(batch.loss_mask.shape, generator=gen)
    return batch


def _varlen_learner(model: torch.nn.Module, tokens: int, caplog: pytest.LogCaptureFixture | None = None,
                    checkpointing: bool = False) -> TorchLearner:
    config = LearnerConfig(micro_batch_tokens=tokens, packed_attention="varlen", gradient_checkpointing=checkpointing)
    learner = TorchLearner(model, config, lr=1e-3, device=torch.device("cpu"))
    assert not learner.varlen  # CPU: torch's op cannot serve, the learner keeps the mask and says so ...
    assert caplog is None or "packed micro-batches use the block-diagonal mask here" in caplog.text
    learner.varlen = True  # ... so the test turns the path on, with its CPU loop standing in for the op
    varlen_attention.install(learner.model)
    return learner


def test_boundaries_of_a_packed_row() -> None:
    batch = pad_sequences([[1, 2, 3], [4, 5], [6, 7, 8, 9, 10], [11]], [1, 1, 1, 0], pad_id=0)
    [micro] = packed_micro_batches(batch, budget=100)
    # one 64-wide row: sequences of 5, 3, 2 and 1 tokens, then the tail padding as a sequence of its own
    assert micro.cu_seqlens.tolist() == [0, 5, 8, 10, 11, 64] and micro.cu_seqlens.dtype == torch.int32
    two = packed_micro_batches(pad_sequences([[1] * 40, [2] * 30, [3] * 64], [0, 0, 0], pad_id=0), budget=1000)
    # widths round to 64: 64 | 40 + tail 24 | 30 + tail 34, rows laid end to end
    assert two[0].cu_seqlens.tolist() == [0, 64, 104, 128, 158, 192]


def test_varlen_logprobs_equal_mask_and_padded(caplog: pytest.LogCaptureFixture) -> None:
    batch = _batch()
    model = build_tiny_model("tiny", seed=5)
    mask = TorchLearner(copy.deepcopy(model), LearnerConfig(micro_batch_tokens=20), lr=1e-3, device=torch.device("cpu"))
    varlen = _varlen_learner(copy.deepcopy(model), tokens=20, caplog=caplog)
    with torch.no_grad():
        padded, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask)
    lp_mask, ent_mask = mask.logprobs(batch, with_entropy=True)
    lp_varlen, ent_varlen = varlen.logprobs(batch, with_entropy=True)
    scored = batch.attention_mask.bool().clone()
    scored[:, 0] = False
    assert torch.allclose(lp_varlen[scored], lp_mask[scored], atol=1e-5)
    assert torch.allclose(ent_varlen[scored], ent_mask[scored], atol=1e-5)
    assert torch.allclose(lp_varlen[scored], padded[scored], atol=1e-5)
    assert (lp_varlen[~scored] == 0).all()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_varlen_loss_and_gradients_equal_mask(checkpointing: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # with gradient checkpointing the layers' recomputed forward attends by the boundaries too (twice the calls)
    calls = []
    loop = varlen_attention._causal_loop
    monkeypatch.setattr(varlen_attention, "_causal_loop", lambda *args: calls.append(1) or loop(*args))
    torch.manual_seed(0)
    batch = _batch()
    loss_fn = make_policy_loss(AlgorithmConfig(loss_agg="seq_mean_token_mean", entropy_coef=0.01), len(batch),
                               float(batch.loss_mask.sum()), 16)
    model = build_tiny_model("tiny", seed=5)
    learners = {"mask": TorchLearner(copy.deepcopy(model), LearnerConfig(micro_batch_tokens=20), lr=1e-3,
                                     device=torch.device("cpu")),
                "varlen": _varlen_learner(copy.deepcopy(model), tokens=20, checkpointing=checkpointing)}
    totals, grads = {}, {}
    for name, learner in learners.items():
        learner.model.train()
        totals[name] = 0.0
        for item in learner._micro_batches(batch):
            _, micro, fed = learner._split(item)
            totals[name] += float(learner._backward(fed, micro, loss_fn)["loss/total"])
        grads[name] = torch.cat([p.grad.flatten() for p in learner.model.parameters() if p.grad is not None])
    layers, micro_batches = learners["varlen"].model.config.num_hidden_layers, len(list(learners["varlen"]._micro_batches(batch)))
    assert len(calls) == layers * micro_batches * (2 if checkpointing else 1)
    assert totals["varlen"] == pytest.approx(totals["mask"], rel=1e-5)
    assert torch.allclose(grads["varlen"], grads["mask"], rtol=1e-4, atol=1e-6) and grads["varlen"].abs().sum() > 0


def test_installed_model_runs_padded_batches_as_sdpa() -> None:
    # no boundaries passed (padded micro-batches, generation): transformers' SDPA path with its mask, bit for bit
    batch = _batch()
    model = build_tiny_model("tiny", seed=5).eval()
    with torch.no_grad():
        before, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask)
        varlen_attention.install(model)
        after, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask)
    assert model.config._attn_implementation == varlen_attention.NAME
    assert torch.equal(before, after)


def test_no_dropout() -> None:
    q = torch.zeros(1, 2, 4, 8)
    with pytest.raises(ValueError, match="no dropout"):
        varlen_attention.varlen_attention_forward(torch.nn.Module(), q, q, q, None, dropout=0.1,
                                                  cu_seq_lens_q=torch.tensor([0, 4], dtype=torch.int32))


def test_auto_is_the_default_and_keeps_the_mask_silently_where_varlen_cannot_serve(
        caplog: pytest.LogCaptureFixture) -> None:
    assert LearnerConfig().packed_attention == "auto"
    model = build_tiny_model("tiny", seed=5)
    with caplog.at_level("WARNING", logger="rlkit.learner"):
        learner = TorchLearner(model, LearnerConfig(micro_batch_tokens=20), lr=1e-3, device=torch.device("cpu"))
    assert not learner.varlen and model.config._attn_implementation != varlen_attention.NAME
    assert "packed_attention" not in caplog.text  # auto falls back without a word; only an explicit varlen warns


def test_rows_of_one_sequence_each_take_the_causal_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # equal 64-token sequences fill their rows exactly: no boundaries passed (SDPA, causal), the same numbers
    gen = torch.Generator().manual_seed(1)
    batch = pad_sequences([torch.randint(1, 60, (64,), generator=gen).tolist() for _ in range(3)], [8, 8, 8], pad_id=0)
    [micro] = packed_micro_batches(batch, budget=192)
    assert attention_boundaries(micro) is None and micro.input_ids.shape == (3, 64)
    assert attention_boundaries(packed_micro_batches(_batch(), budget=20)[0]) is not None
    model = build_tiny_model("tiny", seed=5)
    varlen = _varlen_learner(copy.deepcopy(model), tokens=192)
    calls = []
    monkeypatch.setattr(varlen_attention, "_causal_loop", lambda *args: calls.append(args) or pytest.fail("boundaries"))
    with torch.no_grad():
        lp, _ = varlen.logprobs(batch)
        padded, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask)
    assert not calls and torch.allclose(lp[:, 1:], padded[:, 1:], atol=1e-5)


def test_installed_model_generates_as_before() -> None:
    # the engine shares the learner's module: transformers' generate must run the same under the registered attention
    from rlkit.models import encode_prompt
    from rlkit.rollout.base import SamplingParams
    from rlkit.rollout.hf import HFEngine
    from rlkit.world.tokenizer import build_tiny_tokenizer

    model, tok = build_tiny_model("tiny", seed=5).eval(), build_tiny_tokenizer()
    prompts = [encode_prompt(tok, [{"role": "user", "content": f"Compute {a}+{a}."}]) for a in (3, 14)]
    sampling = SamplingParams(n=2, max_new_tokens=10, seed=0)
    before = HFEngine(model, tok).generate(prompts, sampling)
    varlen_attention.install(model)
    after = HFEngine(model, tok).generate(prompts, sampling)
    assert [c.response_ids for c in after] == [c.response_ids for c in before]
    assert [c.logprobs for c in after] == [c.logprobs for c in before]


def test_sft_packed_rows_attend_by_their_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    # SFT packing (the Phi-4 recipe's mid-training: 16K-token rows of several traces): boundaries read from the restarting
    # position ids on the host; a train step equals the mask path's, and every layer's attention took the boundaries
    from rlkit.stages.sft import pack_sequences, sft_loss

    gen = torch.Generator().manual_seed(2)
    lengths = [9, 30, 14, 6, 21, 11, 17]
    sequences = [torch.randint(1, 60, (n,), generator=gen).tolist() for n in lengths]
    batch = pack_sequences(sequences, [2] * len(lengths), max_length=40, pad_id=0)
    cu = boundaries(batch.position_ids)
    width = batch.input_ids.shape[1]
    assert cu.dtype == torch.int32 and cu[-1] == batch.input_ids.numel()
    assert (cu[1:] > cu[:-1]).all() and set(range(0, batch.input_ids.numel(), width)) <= set(cu.tolist())
    assert len(cu) - 1 == len(lengths) + int((batch.attention_mask.sum(1) < width).sum())  # a sequence each, + tail pads
    calls = []
    loop = varlen_attention._causal_loop
    monkeypatch.setattr(varlen_attention, "_causal_loop", lambda *args: calls.append(1) or loop(*args))
    model = build_tiny_model("tiny", seed=5)
    mask = TorchLearner(copy.deepcopy(model), LearnerConfig(micro_batch_size=2), lr=1e-3, device=torch.device("cpu"))
    varlen = _varlen_learner(copy.deepcopy(model), tokens=0)
    varlen.config = varlen.config.model_copy(update={"micro_batch_size": 2})
    loss = sft_loss(float(batch.loss_mask.sum()))
    metrics = {name: learner.train_step(batch, loss) for name, learner in (("mask", mask), ("varlen", varlen))}
    layers, micro_batches = model.config.num_hidden_layers, -(-len(batch) // 2)
    assert len(calls) == layers * micro_batches
    assert metrics["varlen"]["loss"] == pytest.approx(metrics["mask"]["loss"], rel=1e-5)
    assert metrics["varlen"]["grad_norm"] == pytest.approx(metrics["mask"]["grad_norm"], rel=1e-5)
    # after one AdamW step at lr 1e-3 (which moves a near-zero gradient's weight by up to lr): 3.1e-5 measured
    assert max(float((a - b).abs().max()) for a, b in zip(mask.model.parameters(), varlen.model.parameters())) < 1e-4
    with torch.no_grad():
        lp_mask, _ = mask.logprobs(batch)
        lp_varlen, _ = varlen.logprobs(batch)
    assert len(calls) == 2 * layers * micro_batches and torch.allclose(lp_varlen, lp_mask, atol=1e-5)
