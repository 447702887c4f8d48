"""The Triton decode-attention kernels against plain attention, run by Triton's CPU interpreter.

Needs Triton (GPU installs have it; a CPU-only install skips). The GPU itself checks them end to end in
scripts/gpu_checks.py (greedy decoding equal to transformers `generate` with these kernels on).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

SCRIPT = r"""
import torch
from rlkit.rollout import decode_attention as module
from rlkit.rollout.decode_attention import decode_attention

torch.manual_seed(0)
worst = {}
for fold, dtype, groups, head_dim in ((True, torch.float32, 7, 64), (True, torch.float16, 6, 128),
                                      (False, torch.float32, 7, 64), (False, torch.float16, 6, 128)):
    module.FOLD = fold  # the merge folded into the last chunk program, or the separate merge kernel
    for slot in (5, 127, 130, 149):  # one chunk, a chunk's last slot, two chunks, the cache's last slot
        batch, kv_heads, length = 3, 2, 150
        q = torch.randn(batch, kv_heads * groups, head_dim).to(dtype)
        keys, values = (torch.randn(batch, kv_heads, length, head_dim).to(dtype) for _ in range(2))
        valid = torch.zeros(batch, length, dtype=torch.bool)
        valid[:, : slot + 1] = True
        valid[0, : min(slot, 129)] = False  # left padding: a whole chunk with no valid slot
        valid[1, :3] = False
        out = decode_attention(q, keys, values, valid, torch.tensor([slot]), 0.125)
        k, v = (t.float().repeat_interleave(groups, 1) for t in (keys, values))
        scores = torch.einsum("bhd,bhld->bhl", q.float(), k).mul(0.125).masked_fill(~valid[:, None], float("-inf"))
        expected = torch.einsum("bhl,bhld->bhd", scores.softmax(-1), v)
        error = (out.float() - expected).abs().nan_to_num(nan=float("inf")).max()  # a NaN fails, not hides
        worst[str(dtype)] = max(worst.get(str(dtype), 0.0), float(error))
        if fold:
            assert int(module._counters[torch.device("cpu")].abs().sum()) == 0  # tickets zeroed for the next call
print(worst["torch.float32"], worst["torch.float16"])
"""


def test_kernels_equal_plain_attention_with_left_padding_and_chunk_edges_merged_either_way() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fp32, fp16 = map(float, done.stdout.split()[-2:])
    assert fp32 < 1e-5  # IEEE products in fp32
    assert fp16 < 5e-3  # probabilities rounded to fp16 before the product with V, as the plain path rounds them
