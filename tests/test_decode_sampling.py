"""The Triton sampling kernels (inverse CDF at one uniform a row) against float64 references, run by Triton's CPU
interpreter.

Needs Triton (GPU installs have it; a CPU-only install skips). Given the uniforms, the kernels must pick the token
an inverse CDF computed in float64 picks, and record log softmax(logits / T) there; with their own Philox uniforms the
draws must follow softmax(logits / T) (frequencies over many rows against the probabilities), repeat for the same
(seed, step) and change with the step. The GPU runs them end to end in scripts/gpu_checks.py and decode_bench.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

SCRIPT = r"""
import torch
from rlkit.rollout import decode_sampling
from rlkit.rollout.decode_sampling import inverse_cdf_sample

decode_sampling.SPLIT = 2048  # small chunks: the interpreter is slow; several chunks a row all the same
torch.manual_seed(0)
# 1. given uniforms -> the float64 inverse CDF's tokens and log-probabilities; five chunks, a -inf stretch that
#    empties whole chunks, a row whose first columns are -inf, uniforms at the edges
batch, vocab = 6, 9000
logits = (torch.randn(batch, vocab) * 3).to(torch.bfloat16)
logits[1, 100:6000] = float("-inf")
logits[2, :2500] = float("-inf")
uniform = torch.rand(batch)
uniform[3], uniform[4] = 0.0, 1.0 - 2**-24
mismatch, worst = 0, 0.0
for temperature in (1.0, 0.7):
    token, logprob = inverse_cdf_sample(logits, torch.tensor([5]), torch.tensor([3]), temperature, uniform)
    log_p = torch.log_softmax(logits.double() / temperature, -1)
    cumulative = log_p.exp().cumsum(-1)
    expected = torch.searchsorted(cumulative, uniform.double()[:, None], right=True).squeeze(1)
    expected = torch.minimum(expected, torch.tensor(vocab - 1))
    for row in range(batch):
        if int(token[row]) != int(expected[row]):  # only where u lies within rounding of a boundary
            gap = float((cumulative[row, int(expected[row])] - uniform[row]).abs())
            mismatch += gap > 1e-5
    worst = max(worst, float((logprob.double() - log_p.gather(1, token[:, None]).squeeze(1)).abs().max()))
    assert torch.isfinite(log_p.gather(1, token[:, None])).all()  # never a token of probability 0
# 2. own uniforms: frequencies over 512 rows of one 8-token distribution at T = 0.5
rows = 512
base = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0, 1.5])
probs = torch.softmax(base / 0.5, -1)
token, _ = inverse_cdf_sample(base.expand(rows, -1).contiguous(), torch.tensor([11]), torch.tensor([0]), 0.5)
freq = torch.bincount(token, minlength=8).float() / rows
z = float(((freq - probs).abs() / (probs * (1 - probs) / rows).sqrt()).max())
again, _ = inverse_cdf_sample(base.expand(rows, -1).contiguous(), torch.tensor([11]), torch.tensor([0]), 0.5)
later, _ = inverse_cdf_sample(base.expand(rows, -1).contiguous(), torch.tensor([11]), torch.tensor([1]), 0.5)
print(mismatch, worst, z, int((again == token).all()), float((later == token).float().mean()))
"""


def test_kernels_sample_the_inverse_cdf_and_draw_from_the_softmax() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    mismatch, worst, z, repeat, agree = map(float, done.stdout.split()[-5:])
    assert mismatch == 0  # every token the float64 inverse CDF's, at both temperatures
    assert worst < 1e-4  # the recorded log-probability is log softmax(logits / T) at the token (fp32 sums)
    assert z < 4.5  # the largest of 8 frequency deviations, in standard errors (deterministic seed)
    assert repeat == 1  # the same (seed, step) draws the same uniforms
    assert agree < 0.7  # the next step draws fresh (two independent draws agree w.p. sum p^2 ~ 0.5 here)
