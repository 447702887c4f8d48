"""KL estimators k1, k2, k3 by hand, and k3's properties."""

import math

import pytest
import torch

from rlkit.algos.kl import kl_estimate

LOGP = torch.tensor([math.log(0.5), math.log(0.2), math.log(0.3)])
REF = torch.tensor([math.log(0.25), math.log(0.4), math.log(0.3)])
R = [math.log(0.25 / 0.5), math.log(0.4 / 0.2), 0.0]  # ref - policy


@pytest.mark.parametrize(
    "estimator, expected",
    [
        ("k1", [-r for r in R]),
        ("k2", [0.5 * r * r for r in R]),
        ("k3", [math.exp(r) - 1 - r for r in R]),
    ],
)
def test_estimators_by_hand(estimator, expected):
    assert torch.allclose(kl_estimate(LOGP, REF, estimator), torch.tensor(expected), atol=1e-6)


def test_k3_is_nonnegative_and_zero_at_equal_policies():
    logp = torch.randn(100)
    assert torch.all(kl_estimate(logp, logp + torch.randn(100), "k3") >= 0)
    assert torch.all(kl_estimate(logp, logp, "k3") == 0)


def test_k1_and_k3_are_unbiased_for_the_true_kl():
    # KL(p || q) for p = [0.7, 0.3], q = [0.4, 0.6], as the expectation under p of each estimator
    p, q = torch.tensor([0.7, 0.3]), torch.tensor([0.4, 0.6])
    true_kl = float((p * (p / q).log()).sum())
    for estimator in ("k1", "k3"):
        expected = float((p * kl_estimate(p.log(), q.log(), estimator)).sum())
        assert expected == pytest.approx(true_kl, abs=1e-6)


def test_unknown_estimator():
    with pytest.raises(ValueError, match=r"unknown KL estimator 'k4' for algorithm\.kl_estimator \(expected one of k1, k2, k3\)"):
        kl_estimate(LOGP, REF, "k4")
