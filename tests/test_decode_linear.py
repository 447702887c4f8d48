"""The Triton decode linear (rlkit/rollout/decode_linear.py) against F.linear, run by Triton's CPU interpreter.

Needs Triton (GPU installs have it; a CPU-only install skips). Covers bias and no bias, rows and columns that do not
fill a block, and split K with the in-kernel reduction (the tile's last program sums the partials and zeroes its
counter). fp16 here: the interpreter (Triton 3.9) gets bf16 products wrong; bf16 is checked on the GPU by
scripts/decode_gemm_bench.py against F.linear. The GPU runs it end to end in scripts/gpu_checks.py and times it in scripts/decode_gemm_bench.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

SCRIPT = r"""
import torch
import torch.nn.functional as F
from rlkit.rollout import decode_linear as module

torch.manual_seed(0)
worst = {}
cases = [  # (dtype, rows, out, in, bias, config (block_m, block_n, block_k, split_k, warps, stages))
    (torch.float32, 5, 40, 96, True, (16, 16, 32, 1, 4, 2)),
    (torch.float32, 20, 24, 128, False, (16, 16, 32, 4, 4, 2)),
    (torch.float16, 7, 48, 256, True, (16, 32, 64, 2, 4, 2)),
    (torch.float16, 33, 50, 192, False, (32, 16, 64, 3, 4, 2)),
]
for dtype, rows, out_features, in_features, bias, config in cases:
    x = torch.randn(rows, in_features).to(dtype)
    w = (torch.randn(out_features, in_features) * 0.1).to(dtype)
    b = torch.randn(out_features).to(dtype) if bias else None
    for _ in range(2):  # a second call finds its counters zeroed again
        y = module.launch(x, w, b, config)
    expected = F.linear(x.float(), w.float(), None if b is None else b.float())
    error = float((y.float() - expected).abs().nan_to_num(nan=float("inf")).max() / expected.abs().max())
    worst[str(dtype)] = max(worst.get(str(dtype), 0.0), error)
counters = module._counters.get(torch.device("cpu"))
assert counters is not None and int(counters.abs().sum()) == 0
print(worst["torch.float32"], worst["torch.float16"])
"""


def test_triton_linear_equals_f_linear_with_bias_edges_and_split_k() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fp32, fp16 = map(float, done.stdout.split()[-2:])
    assert fp32 < 1e-5  # IEEE products in fp32
    assert fp16 < 1e-2  # fp32 accumulation, one rounding of the output to fp16
