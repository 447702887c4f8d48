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


ROPE_SCRIPT = r"""
import torch
from rlkit.rollout import decode_attention as module
from rlkit.rollout.decode_attention import decode_attention_rope
from rlkit.rollout.hf_fast import _rotate_half

torch.manual_seed(0)
worst = {}
for fold, dtype, groups, head_dim in ((True, torch.float32, 7, 64), (False, torch.float32, 7, 64),
                                      (True, torch.float16, 6, 128)):
    module.FOLD = fold
    for slot in (5, 127, 128, 149):  # one chunk, a chunk's last slot, a chunk's first slot, the cache's last slot
        batch, kv_heads, length = 3, 2, 150
        heads = kv_heads * groups
        # q|k|v as the engine slices them from one projection: strided views, not contiguous tensors
        qkv = torch.randn(batch, (heads + 2 * kv_heads) * head_dim).to(dtype)
        q, k, v = (t.view(batch, -1, head_dim) for t in qkv.split([heads * head_dim, kv_heads * head_dim,
                                                                   kv_heads * head_dim], dim=-1))
        angle = torch.rand(batch, head_dim // 2) * 6.28
        cos, sin = (torch.cat([f(angle)] * 2, -1).to(dtype) for f in (torch.cos, torch.sin))
        keys, values = (torch.randn(batch, kv_heads, length, head_dim).to(dtype) for _ in range(2))
        stale = keys[:, :, slot].clone()
        valid = torch.zeros(batch, length, dtype=torch.bool)
        valid[:, : slot + 1] = True
        valid[1, :3] = False  # left padding
        # the reference: the torch path's rotation (fp32, rounded once), the cache written, plain attention
        def rotate(x):
            return (x.float() * cos[:, None].float() + _rotate_half(x.float()) * sin[:, None].float()).to(dtype)
        q_ref, k_ref = rotate(q), rotate(k)
        keys_ref, values_ref = keys.clone(), values.clone()
        keys_ref[:, :, slot], values_ref[:, :, slot] = k_ref, v
        out = decode_attention_rope(q, k, v, cos, sin, keys, values, valid, torch.tensor([slot]), 0.125)
        assert torch.equal(keys, keys_ref) and torch.equal(values, values_ref), (fold, dtype, slot)  # the cache writes
        assert not torch.equal(keys[:, :, slot], stale)
        kr, vr = (t.float().repeat_interleave(groups, 1) for t in (keys_ref, values_ref))
        scores = torch.einsum("bhd,bhld->bhl", q_ref.float(), kr).mul(0.125).masked_fill(~valid[:, None], float("-inf"))
        expected = torch.einsum("bhl,bhld->bhd", scores.softmax(-1), vr)
        error = (out.float() - expected).abs().nan_to_num(nan=float("inf")).max()
        worst[str(dtype)] = max(worst.get(str(dtype), 0.0), float(error))
print(worst["torch.float32"], worst["torch.float16"])
"""


def test_rope_kernel_rotates_writes_the_cache_and_attends_like_the_torch_path() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", ROPE_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fp32, fp16 = map(float, done.stdout.split()[-2:])
    assert fp32 < 1e-5
    assert fp16 < 5e-3


ENGINE_SCRIPT = r"""
import torch
from rlkit.models import encode_prompt
from rlkit.rollout import decode_attention as module
from rlkit.rollout import hf_fast
from rlkit.rollout.base import SamplingParams
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer

hf_fast.decode_attention_available = lambda head_dim, device: True  # the kernels on CPU tensors (interpreter)
torch.manual_seed(0)
model = build_tiny_model("tiny", seed=3).eval()  # (grouped heads: the kernel tests above)
with torch.no_grad():
    model.model.embed_tokens.weight.mul_(4.0)  # sharpen: greedy tokens not decided by rounding
tokenizer = build_tiny_tokenizer()
prompts = [encode_prompt(tokenizer, [{"role": "user", "content": t}]) for t in ("12+7=", "a longer prompt, 99-1=")]
module.CHUNK = 16  # short chunks so that a short decode crosses chunk edges (the interpreter is slow)
sampling = SamplingParams(n=1, temperature=0.0, max_new_tokens=24)
results = {}
for name, attention, fuse in (("plain", "plain", False), ("kernel", "triton", False), ("rope", "triton", True)):
    module.FUSE_ROPE = fuse
    engine = hf_fast.FastHFEngine(model, tokenizer)
    engine.stop_ids = set()
    engine.attention = attention
    results[name] = engine.generate(prompts, sampling)
for name in ("kernel", "rope"):
    for ref, got in zip(results["plain"], results[name]):
        assert got.response_ids == ref.response_ids, name
        worst = max(abs(a - b) for a, b in zip(got.logprobs, ref.logprobs))
        assert worst < 1e-4, (name, worst)
print("ok")
"""


def test_engine_decodes_the_same_greedy_tokens_with_the_kernels_as_with_plain_attention() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "ok"
