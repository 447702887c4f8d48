"""Token-budget packed micro-batches in the torch learner: the plan and layout by hand, and packed
losses, gradients and log-probabilities equal to padded ones on the tiny model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from rlkit.algos.rl_objective import make_policy_loss
from rlkit.config import AlgorithmConfig, LearnerConfig
from rlkit.learner.base import pad_sequences
from rlkit.learner.logprobs import sequence_logprobs
from rlkit.learner.memory import knobs_to_turn
from rlkit.learner.packing import packed_micro_batches, plan_micro_batches
from rlkit.learner.torch_learner import TorchLearner
from rlkit.world.model import build_tiny_model


def test_plan_longest_first_under_the_budget() -> None:
    # lengths 5, 2, 7, 3 with a budget of 8 tokens: 7 alone, then 5 + 3, then 2
    assert plan_micro_batches([5, 2, 7, 3], row_group=1, budget=8) == [[2], [0, 3], [1]]
    # row groups (DPO pairs) stay whole: groups (0, 1) = 7 tokens and (2, 3) = 10; the longer first
    assert plan_micro_batches([5, 2, 7, 3], row_group=2, budget=12) == [[2, 3], [0, 1]]
    # a sequence longer than the budget is a micro-batch of its own
    assert plan_micro_batches([20, 1], row_group=1, budget=8) == [[0], [1]]


def test_pack_layout_and_unpack() -> None:
    batch = pad_sequences([[1, 2, 3], [4, 5], [6, 7, 8, 9, 10], [11]], [1, 1, 1, 0], pad_id=0)
    [micro] = packed_micro_batches(batch, budget=100)
    # width 64 (rounded up); the 5-token sequence first, then first fit: 3, 2 and 1 all join it
    assert micro.input_ids.shape == (1, 64)
    assert micro.input_ids[0, :11].tolist() == [6, 7, 8, 9, 10, 1, 2, 3, 4, 5, 11]
    assert micro.position_ids[0, :13].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 0, 0, 1]
    assert micro.useful_tokens == 11 and micro.computed_tokens == 64
    values = torch.arange(64, dtype=torch.float)[None]
    # the micro-batch's rows, longest first; row i, column t > 0 <- packed column offset_i + t; column 0 scores nothing
    assert micro.rows.tolist() == [2, 0, 1, 3]
    assert micro.unpack(values).tolist() == [[0, 1, 2, 3, 4], [0, 6, 7, 0, 0], [0, 9, 0, 0, 0], [0, 0, 0, 0, 0]]


def _learners(tokens: int) -> tuple[TorchLearner, TorchLearner]:
    model = build_tiny_model("tiny", seed=5)
    padded = TorchLearner(model, LearnerConfig(micro_batch_size=2), lr=1e-3, device=torch.device("cpu"))
    packed = TorchLearner(copy.deepcopy(model), LearnerConfig(micro_batch_tokens=tokens), lr=1e-3, device=torch.device("cpu"))
    return padded, packed


def _batch() -> tuple:
    gen = torch.Generator().manual_seed(0)
    lengths, starts = [9, 3, 14, 6, 11, 5], [2, 1, 4, 2, 3, 2]
    sequences = [torch.randint(1, 60, (n,), generator=gen).tolist() for n in lengths]
    batch = pad_sequences(sequences, starts, pad_id=0)
    batch.advantages = torch.randn(len(lengths), generator=gen)[:, None].expand_as(batch.loss_mask).contiguous()
    batch.old_logprobs = -3.0 + 0.3 * torch.randn(batch.loss_mask.shape, generator=gen)
    return batch


def test_packed_loss_and_gradients_equal_padded() -> None:
    """Sequence-mean aggregation (the loss that would break if packed rows mixed sequences) and a clipped
    ratio; budget 20 tokens -> micro-batches [14], [11, 9], [6, 5, 3] packed into rows."""
    torch.manual_seed(0)
    batch = _batch()
    alg = AlgorithmConfig(loss_agg="seq_mean_token_mean", entropy_coef=0.01)
    loss_fn = make_policy_loss(alg, len(batch), float(batch.loss_mask.sum()), 16)
    padded, packed = _learners(tokens=20)
    assert [len(m.rows) for m in packed._micro_batches(batch)] == [1, 2, 3]

    # hand reference: the whole batch padded in one forward, the loss written out
    with torch.no_grad():
        lp, ent = sequence_logprobs(padded.model, batch.input_ids, batch.attention_mask, with_entropy=True)
        ratio = torch.exp(lp - batch.old_logprobs)
        adv, mask = batch.advantages, batch.loss_mask
        pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.2))
        policy = ((pg * mask).sum(1) / mask.sum(1)).sum() / len(batch)
        expected = policy - 0.01 * (ent * mask).sum() / mask.sum()

    grads = {}
    for name, learner in (("padded", padded), ("packed", packed)):
        learner.model.train()
        total = 0.0
        for item in learner._micro_batches(batch):
            _, micro, fed = learner._split(item)
            total += learner._backward(fed, micro, loss_fn)["loss/total"]
        assert total == pytest.approx(float(expected), rel=1e-5)
        grads[name] = torch.cat([p.grad.flatten() for p in learner.model.parameters() if p.grad is not None])
    assert torch.allclose(grads["packed"], grads["padded"], rtol=1e-4, atol=1e-6)
    assert grads["packed"].abs().sum() > 0


def test_packed_logprobs_and_token_counts() -> None:
    batch = _batch()
    padded, packed = _learners(tokens=20)
    lp_padded, ent_padded = padded.logprobs(batch, with_entropy=True)
    lp_packed, ent_packed = packed.logprobs(batch, with_entropy=True)
    scored = batch.attention_mask.bool().clone()
    scored[:, 0] = False
    assert torch.allclose(lp_packed[scored], lp_padded[scored], atol=1e-5)
    assert torch.allclose(ent_packed[scored], ent_padded[scored], atol=1e-5)
    assert (lp_packed[~scored] == 0).all()

    loss_fn = make_policy_loss(AlgorithmConfig(), len(batch), float(batch.loss_mask.sum()), 16)
    a, b = padded.train_step(batch, loss_fn), packed.train_step(batch, loss_fn)
    assert a["tokens/train_useful"] == b["tokens/train_useful"] == 48
    assert a["tokens/train_computed"] == 2 * 9 + 2 * 14 + 2 * 11  # rows in pairs, each pair trimmed to its longer
    assert b["tokens/train_computed"] == 3 * 64  # three micro-batches of one 64-wide packed row each
    assert a["loss/total"] == pytest.approx(b["loss/total"], abs=1e-6)


def test_out_of_memory_names_the_knobs() -> None:
    knobs = knobs_to_turn(LearnerConfig(), rows=8, width=3000)
    assert knobs[0].startswith("set learner.micro_batch_tokens") and "micro_batch_size (now 64)" in knobs[0]
    assert any("learner.logprob_chunk_size: 4096" in k for k in knobs)
    assert any("learner.gradient_checkpointing: true" in k for k in knobs)
    kept = knobs_to_turn(LearnerConfig(micro_batch_tokens=8192, logprob_chunk_size=4096), 1, 9000)
    assert any("lower learner.keep_head_logits_gib (now 12" in k for k in kept)  # the fused head's held logits (default)
    turned = knobs_to_turn(LearnerConfig(micro_batch_tokens=8192, logprob_chunk_size=4096, gradient_checkpointing=True,
                                         keep_head_logits_gib=0), 1, 9000)
    assert turned == ["lower rollout.max_new_tokens (the longest sequence sets the least a micro-batch holds)"]


def test_token_budget_with_deepspeed_is_a_config_error() -> None:
    from rlkit.config import load_config
    from rlkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"learner\.micro_batch_tokens.*learner\.backend: torch"):
        load_config(Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml", ["learner.backend=deepspeed", "learner.micro_batch_tokens=4096"])
