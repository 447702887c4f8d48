"""The fused LM head's one-pass Triton kernels against the compiled-torch path's functions, by Triton's CPU interpreter.

Needs Triton (GPU installs have it; a CPU-only install skips). On bf16 and fp32 logits whose width is not a multiple
of the kernel's block (a short last block), `chunk_stats` must give `_chunk_stats`'s log p(target), log Z and entropy,
and `chunk_grad` `_chunk_grad`'s gradient, also when it writes over the logits in place. The GPU checks the kernels
inside `FusedHeadLogprobs` against plain autograd (scripts/gpu_checks.py, check 3).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

SCRIPT = r"""
import torch
from rlkit.learner.head_kernels import chunk_grad, chunk_stats
from rlkit.learner.logprobs import _chunk_grad, _chunk_stats

torch.manual_seed(0)
rows, vocab = 5, 9000  # three blocks of 4,096 columns, the last one short
worst_stats, worst_in_place, worst_grad = 0.0, 0.0, {}
for dtype in (torch.bfloat16, torch.float32):
    logits = (torch.randn(rows, vocab) * 4).to(dtype)
    logits[2, :50] += 30.0  # a peaked row: entropy near 0
    targets = torch.randint(0, vocab, (rows,))
    targets[2] = 7
    got = chunk_stats(logits, targets)
    want = _chunk_stats(logits, targets)
    worst_stats = max(worst_stats, max(float((g - w).abs().max()) for g, w in zip(got, want)))
    _, log_z, entropy = want
    g_lp, g_ent = torch.randn(rows), torch.randn(rows)
    grad = chunk_grad(logits, targets, log_z, entropy, g_lp, g_ent)
    ref = _chunk_grad(logits, targets, log_z, entropy, g_lp, g_ent)
    assert grad.dtype == dtype
    scale = float(ref.float().abs().max())
    worst_grad[dtype] = float((grad.float() - ref.float()).abs().max()) / scale
    copy = logits.clone()
    chunk_grad(copy, targets, log_z, entropy, g_lp, g_ent, out=copy)
    worst_in_place = max(worst_in_place, float((copy.float() - grad.float()).abs().max()))
print(worst_stats, worst_grad[torch.bfloat16], worst_grad[torch.float32], worst_in_place)
"""


def test_kernels_match_the_torch_chunk_functions() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    worst_stats, worst_bf16, worst_fp32, worst_in_place = map(float, done.stdout.split()[-4:])
    assert worst_stats < 2e-4  # fp32 sums over 9,000 columns, one pass vs logsumexp's two (values up to ~40)
    assert worst_bf16 < 8e-3  # relative to the largest entry: one bf16 rounding step (2^-8) apart at most
    assert worst_fp32 < 1e-5
    assert worst_in_place == 0.0  # writing over the logits gives the same gradient
