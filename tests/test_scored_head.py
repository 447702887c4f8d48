"""The LM head on scored positions only (`sequence_logprobs(scored=...)`, learner.head_loss_mask_only): values at the
scored positions and every parameter's gradient equal to the head over all positions, for padded and packed
micro-batches, plain and chunked heads; 0 elsewhere; and a train step equal to the all-positions one."""

from __future__ import annotations

import copy

import pytest
import torch

from rlkit.algos.rl_objective import make_policy_loss
from rlkit.config import AlgorithmConfig, LearnerConfig
from rlkit.learner.base import TokenBatch, pad_sequences
from rlkit.learner.logprobs import sequence_logprobs
from rlkit.learner.packing import packed_micro_batches
from rlkit.learner.torch_learner import TorchLearner
from rlkit.stages.sft import pack_sequences, sft_loss
from rlkit.world.model import build_tiny_model


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _assert_same_grads(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], chunked: bool) -> None:
    """Every parameter's gradient equal. The plain head's are bitwise equal here (measured); the chunked head's differ
    by fp32 rounding: its GEMMs round differently with the rows a chunk holds, and on the tiny model the small,
    cancelling k_proj bias gradients amplify that to ~1e-5 of their largest entry, as much as chunks of 1, 4 or 7
    rows differ from each other on the all-positions path (measured)."""
    assert a.keys() == b.keys() and len(a) > 0
    scale = 5e-5 if chunked else 1e-6
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=scale * float(b[name].abs().max())), name
    flat_a, flat_b = torch.cat([g.flatten() for g in a.values()]), torch.cat([g.flatten() for g in b.values()])
    assert float((flat_a - flat_b).norm()) <= (1e-5 if chunked else 1e-7) * float(flat_b.norm())
    assert float(flat_b.norm()) > 0


@pytest.mark.parametrize("chunk", [0, 5])
def test_scored_positions_values_and_gradients_equal_the_full_head(chunk: int) -> None:
    """Right-padded rows; `scored` random (column 0 set too: it scores nothing either way); a loss over the scored
    positions of logprobs and entropy with random weights."""
    gen = torch.Generator().manual_seed(1)
    model = build_tiny_model("tiny", seed=3)
    ids = torch.randint(1, 60, (3, 13), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 5:] = 0
    scored = (torch.rand(ids.shape, generator=gen) < 0.6) & mask.bool()
    scored[0, 0] = True
    w_lp, w_ent = torch.randn(ids.shape, generator=gen), torch.randn(ids.shape, generator=gen)
    weight = scored.clone()
    weight[:, 0] = False  # the positions any column of the result can score

    results = {}
    for name, mask_arg in (("all", None), ("scored", scored)):
        model.zero_grad(set_to_none=True)
        lp, ent = sequence_logprobs(model, ids, mask, with_entropy=True, chunk_size=chunk, scored=mask_arg)
        ((lp * w_lp + ent * w_ent) * weight).sum().backward()
        results[name] = (lp.detach(), ent.detach(), _grads(model))
    (lp_all, ent_all, g_all), (lp_s, ent_s, g_s) = results["all"], results["scored"]
    assert torch.allclose(lp_s[weight], lp_all[weight], rtol=1e-5, atol=1e-6)
    assert torch.allclose(ent_s[weight], ent_all[weight], rtol=1e-5, atol=1e-6)
    assert (lp_s[~weight] == 0).all() and (ent_s[~weight] == 0).all()
    assert (lp_all[~weight] != 0).any()  # the full head did score those (the zeros above are the skip's)
    _assert_same_grads(g_s, g_all, chunked=chunk > 0)


def test_no_scored_position_gives_zeros_and_zero_gradients() -> None:
    model = build_tiny_model("tiny", seed=3)
    ids = torch.randint(1, 60, (2, 7), generator=torch.Generator().manual_seed(2))
    for chunk in (0, 4):
        model.zero_grad(set_to_none=True)
        lp, ent = sequence_logprobs(model, ids, torch.ones_like(ids), True, chunk, scored=torch.zeros_like(ids, dtype=torch.bool))
        assert lp.shape == ent.shape == ids.shape and (lp == 0).all() and (ent == 0).all()
        (lp.sum() + ent.sum()).backward()  # a micro-batch with an empty loss mask still runs backward
        assert all(float(g.abs().sum()) == 0 for g in _grads(model).values())


def test_pack_is_unpacks_inverse_on_scored_tokens() -> None:
    batch = pad_sequences([[1, 2, 3], [4, 5], [6, 7, 8, 9, 10], [11]], [1, 1, 1, 0], pad_id=0)
    [micro] = packed_micro_batches(batch, budget=100)
    # the packed row: 6 7 8 9 10 | 1 2 3 | 4 5 | 11, rows longest first (2, 0, 1, 3); loss masks from column 1, 1, 1, 0
    packed = micro.pack(micro.padded.loss_mask > 0)
    assert packed.dtype == torch.bool and packed.shape == micro.input_ids.shape
    assert packed[0, :12].tolist() == [False, True, True, True, True, False, True, True, False, True, False, False]
    assert not packed[0, 12:].any()
    values = torch.arange(64, dtype=torch.float)[None] + 1
    assert torch.equal(micro.pack(micro.unpack(values)), values * (micro.pack(torch.ones(micro.padded.input_ids.shape)) > 0))


def _rl_batch() -> TokenBatch:
    gen = torch.Generator().manual_seed(0)
    lengths, starts = [9, 3, 14, 6, 11, 5], [2, 1, 4, 2, 3, 2]
    batch = pad_sequences([torch.randint(1, 60, (n,), generator=gen).tolist() for n in lengths], starts, pad_id=0)
    batch.advantages = torch.randn(len(lengths), generator=gen)[:, None] * batch.loss_mask
    # far off outside the mask, as a prompt token's or padding's logprob can be: exp(0 - (-200)) overflows
    batch.old_logprobs = torch.where(batch.loss_mask > 0, -3.0 + 0.3 * torch.randn(batch.loss_mask.shape, generator=gen),
                                     torch.full(batch.loss_mask.shape, -200.0))
    return batch


def _pair(**config) -> tuple[TorchLearner, TorchLearner]:  # noqa: ANN003
    model = build_tiny_model("tiny", seed=5)
    on = TorchLearner(model, LearnerConfig(head_loss_mask_only=True, **config), lr=1e-3, device=torch.device("cpu"))
    off = TorchLearner(copy.deepcopy(model), LearnerConfig(head_loss_mask_only=False, **config), lr=1e-3, device=torch.device("cpu"))
    return on, off


LAYOUTS = [{"micro_batch_size": 2}, {"micro_batch_tokens": 20}, {"micro_batch_size": 2, "logprob_chunk_size": 4},
           {"micro_batch_tokens": 20, "logprob_chunk_size": 4}]


@pytest.mark.parametrize("config", LAYOUTS)
def test_micro_batch_forward_and_gradients_equal_all_positions(config: dict) -> None:
    """Per micro-batch (padded rows or packed ones), the learner's own path: values under the loss mask equal, 0 outside
    it, and the loss (sequence-mean aggregation, clip, KL with ratio correction, entropy bonus) and gradients equal."""
    batch = _rl_batch()
    batch.ref_logprobs = batch.old_logprobs + 0.1
    alg = AlgorithmConfig(loss_agg="seq_mean_token_mean", entropy_coef=0.01, kl_coef=0.05, kl_ratio_correction=True)
    loss_fn = make_policy_loss(alg, len(batch), float(batch.loss_mask.sum()), 16)
    on, off = _pair(**config)
    for learner in (on, off):
        learner.model.train()
    totals = {}
    for name, learner in (("on", on), ("off", off)):
        total = 0.0
        for item in learner._micro_batches(batch):
            _, padded, fed = learner._split(item)
            scored = learner._scored(fed, padded)
            assert (scored is None) == (name == "off")
            lp, ent = learner._forward(fed, True, scored)
            under = padded.loss_mask > 0
            if name == "on":
                assert (lp[~under] == 0).all() and (ent[~under] == 0).all()
                ref_lp, ref_ent = off._forward(fed, True)
                assert torch.allclose(lp[under], ref_lp[under], rtol=1e-5, atol=1e-6)
                assert torch.allclose(ent[under], ref_ent[under], rtol=1e-5, atol=1e-6)
            total += float(learner._backward(fed, padded, loss_fn)["loss/total"])
        totals[name] = total
    assert torch.isfinite(torch.tensor(totals["on"]))  # the far-off old logprobs outside the mask did not make a NaN
    assert totals["on"] == pytest.approx(totals["off"], rel=1e-6, abs=1e-8)
    _assert_same_grads(_grads(on.model), _grads(off.model), chunked=bool(config.get("logprob_chunk_size")))


@pytest.mark.parametrize("config", LAYOUTS)
def test_train_step_equals_all_positions(config: dict) -> None:
    batch = _rl_batch()
    loss_fn = make_policy_loss(AlgorithmConfig(entropy_coef=0.01), len(batch), float(batch.loss_mask.sum()), 16)
    on, off = _pair(**config)
    a, b = on.train_step(batch, loss_fn), off.train_step(batch, loss_fn)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-8), key
    assert a["tokens/train_useful"] == b["tokens/train_useful"] and a["tokens/train_computed"] == b["tokens/train_computed"]
    _assert_same_step(on, off, chunked=bool(config.get("logprob_chunk_size")))


def _assert_same_step(on: TorchLearner, off: TorchLearner, chunked: bool) -> None:
    """The updated weights equal where the gradients are bitwise equal (the plain head). Not for the chunked head: AdamW's
    first step moves every weight by about lr * sign(gradient), so a gradient entry at the fp32 rounding floor can flip
    its step from +lr to -lr (the gradients themselves are compared in the micro-batch test above)."""
    if chunked:
        return
    for p, q in zip(on.model.parameters(), off.model.parameters()):
        assert torch.equal(p, q)


def test_sft_packed_train_step_equals_all_positions() -> None:
    """SFT packing (rows holding several sequences, position_ids given) through the padded path."""
    gen = torch.Generator().manual_seed(4)
    sequences = [torch.randint(1, 60, (n,), generator=gen).tolist() for n in (7, 5, 9, 4, 6)]
    batch = pack_sequences(sequences, [3, 2, 4, 1, 2], max_length=16, pad_id=0)
    assert batch.position_ids is not None and len(batch) < len(sequences)
    for chunk in (0, 4):
        on, off = _pair(micro_batch_size=2, logprob_chunk_size=chunk)
        loss = sft_loss(float(batch.loss_mask.sum()))
        a, b = on.train_step(batch, loss), off.train_step(batch, loss)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6) and a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
        _assert_same_step(on, off, chunked=chunk > 0)


def test_policy_loss_ignores_logprobs_outside_the_mask() -> None:
    """The RL objective's value does not depend on the logprobs outside the loss mask, even with old logprobs there that
    a ratio exp(0 - old) would overflow on (inf * 0 = NaN before the guard)."""
    batch = _rl_batch()
    gen = torch.Generator().manual_seed(9)
    lp = -2.5 + 0.2 * torch.randn(batch.loss_mask.shape, generator=gen)
    alg = AlgorithmConfig(entropy_coef=0.01, kl_coef=0.05, kl_ratio_correction=True)
    batch.ref_logprobs = lp - 0.1
    loss_fn = make_policy_loss(alg, len(batch), float(batch.loss_mask.sum()), 16)
    full, _ = loss_fn(batch, lp, torch.ones_like(lp))
    masked, _ = loss_fn(batch, lp * batch.loss_mask, batch.loss_mask.clone())
    assert torch.isfinite(masked) and float(masked) == pytest.approx(float(full), rel=1e-6)
