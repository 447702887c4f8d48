"""Policy loss, aggregation modes, value loss and the batch-normalized loss function, by hand."""

import math

import pytest
import torch

from rlkit.algos.loss_aggregation import aggregate
from rlkit.algos.ppo_clip import clipped_surrogate
from rlkit.algos.rl_objective import make_policy_loss
from rlkit.algos.value_loss import clipped_value_loss, explained_variance
from rlkit.config import AlgorithmConfig
from rlkit.learner.base import TokenBatch

LOG = math.log


def test_clipped_surrogate_low_and_high_clip():
    # ratios 1.5 (A>0, above 1 + 0.28), 0.5 (A<0, below 1 - 0.2), 1.1 (inside), 1.5 (A<0: unclipped is worse)
    ratio = torch.tensor([1.5, 0.5, 1.1, 1.5])
    adv = torch.tensor([2.0, -1.0, 1.0, -1.0])
    loss, clipped = clipped_surrogate(ratio.log(), torch.zeros(4), adv, clip_low=0.2, clip_high=0.28)
    assert torch.allclose(loss, torch.tensor([-1.28 * 2, 0.8, -1.1, 1.5]))
    assert clipped.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_dual_clip_bounds_negative_advantages():
    ratio = torch.tensor([5.0, 5.0])
    adv = torch.tensor([-1.0, 1.0])
    loss, _ = clipped_surrogate(ratio.log(), torch.zeros(2), adv, 0.2, 0.2, dual_clip=3.0)
    assert torch.allclose(loss, torch.tensor([3.0, -1.2]))  # -A * ratio = 5 capped at -A * c = 3


PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token_mean", (1 + 2 + 3 + 4) / 4),
        ("seq_mean_token_mean", (2.0 + 4.0) / 2),
        ("seq_mean_token_sum", (6.0 + 4.0) / 2),
        ("seq_mean_token_sum_norm", (6.0 + 4.0) / (2 * 8)),
    ],
)
def test_aggregation_modes(mode, expected):
    assert float(aggregate(PER_TOKEN, MASK, mode, 2, 4.0, constant=8)) == pytest.approx(expected)


@pytest.mark.parametrize("mode", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"])
def test_micro_batch_parts_sum_to_the_batch_loss(mode):
    whole = aggregate(PER_TOKEN, MASK, mode, 2, 4.0, constant=8)
    parts = aggregate(PER_TOKEN[:1], MASK[:1], mode, 2, 4.0, 8) + aggregate(PER_TOKEN[1:], MASK[1:], mode, 2, 4.0, 8)
    assert float(parts) == pytest.approx(float(whole))


def test_unknown_aggregation_is_an_error():
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        aggregate(PER_TOKEN, MASK, "mean", 2, 4.0)


def test_value_loss_clipping():
    values, old, returns = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([2.0, -1.0])
    loss, clipped = clipped_value_loss(values, old, returns, clip=0.2)
    # token 0: plain (1-2)^2 = 1, clipped (0.2-2)^2 = 3.24 -> 1.62; token 1: both (0+1)^2 = 1 -> 0.5
    assert torch.allclose(loss, torch.tensor([1.62, 0.5]))
    assert clipped.tolist() == [1.0, 0.0]
    plain, _ = clipped_value_loss(values, old, returns, clip=None)
    assert torch.allclose(plain, torch.tensor([0.5, 0.5]))


def test_explained_variance_by_hand_over_masked_tokens():
    returns = torch.tensor([[9.0, 1.0, 2.0, 3.0], [9.0, 4.0, 0.0, 0.0]])
    values = torch.tensor([[-5.0, 1.0, 1.0, 3.0], [7.0, 5.0, 0.0, 0.0]])
    mask = torch.tensor([[0.0, 1, 1, 1], [0, 1, 0, 0]])  # tokens 1..3 of row 0, token 1 of row 1
    # returns kept: 1, 2, 3, 4 -> var 5/3 (unbiased); residuals 0, 1, 0, -1 -> var 2/3; 1 - (2/3)/(5/3) = 0.6
    assert explained_variance(values, returns, mask) == pytest.approx(0.6)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(returns, 2.5), returns, mask) == pytest.approx(0.0)  # the mean
    assert math.isnan(explained_variance(values, torch.ones_like(returns), mask))  # nothing to explain


def _batch(adv, old, ref, mask):
    ids = torch.zeros(mask.shape, dtype=torch.long)
    return TokenBatch(ids, torch.ones_like(ids), mask, advantages=adv, old_logprobs=old, ref_logprobs=ref)


def test_policy_loss_fn_with_kl_and_entropy_by_hand():
    mask = torch.tensor([[0.0, 1, 1], [0, 1, 0]])
    logp = torch.tensor([[0.0, LOG(0.5), LOG(0.25)], [0, LOG(0.5), 0]])
    old = logp.clone()
    ref = torch.tensor([[0.0, LOG(0.25), LOG(0.25)], [0, LOG(0.5), 0]])
    adv = torch.tensor([[0.0, 1.0, 1.0], [0, -2.0, 0]])
    entropy = torch.tensor([[9.0, 1.0, 2.0], [9, 3.0, 9]])
    alg = AlgorithmConfig(loss_agg="seq_mean_token_mean", kl_coef=0.1, entropy_coef=0.01)
    loss, metrics = make_policy_loss(alg, 2, 3.0, 16)(_batch(adv, old, ref, mask), logp, entropy)
    # policy (ratio 1): per token -A -> seq means (-1, 2) -> 0.5
    # k3 with r = ref - logp: token (0,1): r = log 0.5 -> 0.5 - 1 + log 2; others 0 -> seq means ((0.5 - 1 + ln2)/2, 0)
    kl = ((0.5 - 1 + math.log(2)) / 2) / 2
    ent = (1 + 2 + 3) / 3  # the entropy term is a token mean in every mode
    assert float(loss) == pytest.approx(0.5 + 0.1 * kl - 0.01 * ent, abs=1e-6)
    assert metrics["kl"] == pytest.approx(kl, abs=1e-6)
    assert metrics["entropy"] == pytest.approx(ent)


def test_entropy_only_ignores_the_reward():
    mask = torch.tensor([[1.0, 1.0]])
    logp = torch.tensor([[LOG(0.5), LOG(0.5)]], requires_grad=True)
    entropy = torch.tensor([[1.0, 3.0]], requires_grad=True)
    alg = AlgorithmConfig(entropy_only=True, entropy_coef=0.5)
    batch = _batch(torch.full((1, 2), 5.0), logp.detach(), logp.detach(), mask)
    loss, _ = make_policy_loss(alg, 1, 2.0, 8)(batch, logp, entropy)
    assert float(loss.detach()) == pytest.approx(-0.5 * 2.0)
    loss.backward()
    assert logp.grad is None or torch.all(logp.grad == 0)  # no policy-gradient term
    assert torch.allclose(entropy.grad, torch.tensor([[-0.25, -0.25]]))


def test_on_policy_batch_without_old_logprobs_has_ratio_one():
    mask = torch.tensor([[1.0, 1.0]])
    logp = torch.tensor([[LOG(0.5), LOG(0.2)]], requires_grad=True)
    batch = _batch(torch.tensor([[1.0, 1.0]]), logp.detach(), logp.detach(), mask)
    batch.old_logprobs = None
    loss, _ = make_policy_loss(AlgorithmConfig(), 1, 2.0, 8)(batch, logp, torch.zeros(1, 2))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-1.0)
    assert torch.allclose(logp.grad, torch.tensor([[-0.5, -0.5]]))  # d/dlogp of -A * exp(logp - sg(logp)) / 2
