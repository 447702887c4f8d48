#!/usr/bin/env bash
# The reference GRPO step on one GPU, rlkit and TRL side by side (docs/BENCHMARKS.md).
#
# Runs on the lent GPU machine (torch + transformers preinstalled, no registry): installs the carried
# wheels (wheels/: trl, datasets and what they and rlkit need beyond the image), checks the fast
# engine and the fused logprobs on the GPU briefly, then runs `rlkit bench`. Prints a short table last
# and writes everything under $OUT (or /tmp/rlkit-bench). Make the wheels here first:
#   .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d wheels \
#     trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pydantic==2.14.3 pydantic_core==2.50.4 \
#     annotated-types==0.8.0 typing-inspection==0.4.5
# Usage: scripts/bench_gpu.sh [FRAMEWORKS] [STEPS]   (default: rlkit,trl,rlkit-hf,rlkit-eager,rlkit-plain 3)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/rlkit-bench}
mkdir -p "$OUT"
FRAMEWORKS=${1:-rlkit,trl,rlkit-hf,rlkit-eager,rlkit-plain}
STEPS=${2:-3}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

if [ -d wheels ] && ls wheels/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)" | tee -a "$OUT/gpu.txt"

echo "== correctness on the GPU"
$PY - <<'PY' 2>&1 | tee "$OUT/check.log"
import time, torch
from rlkit.bench.workload import REFERENCE, TINY, build_policy, build_tokenizer, prompt_samples
from rlkit.learner.base import pad_sequences
from rlkit.learner.logprobs import FusedHeadLogprobs, logprobs_from_logits, sequence_logprobs
from rlkit.models import encode_prompt
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.hf import HFEngine
from rlkit.rollout.hf_fast import FastHFEngine
from dataclasses import replace
dev = torch.device("cuda")

# 1. greedy decoding, fp32: the fast engine (CUDA graph + torch.compile) against transformers generate
w = replace(TINY, hidden=256, layers=4, heads=4, kv_heads=2, intermediate=512, vocab=2048, prompts=8, samples=1,
            prompt_tokens=24, completion_tokens=48)
model, tok = build_policy(w, dev), build_tokenizer(w)
with torch.no_grad():
    model.model.embed_tokens.weight.mul_(8.0)  # sharpen: greedy ties decided by rounding say nothing
prompts = [encode_prompt(tok, p["prompt"]) for p in prompt_samples(w)]
prompts = [p[: 12 + i] for i, p in enumerate(prompts)]  # different lengths: left padding
sp = SamplingParams(n=1, temperature=0.0, max_new_tokens=w.completion_tokens)
ref = HFEngine(model, tok); ref.stop_ids = set()
fast = FastHFEngine(model, tok); fast.stop_ids = set()
a, b = ref.generate(prompts, sp), fast.generate(prompts, sp)
same = sum(x.response_ids == y.response_ids for x, y in zip(a, b))
lp = max(abs(u - v) for x, y in zip(a, b) if x.response_ids == y.response_ids for u, v in zip(x.logprobs, y.logprobs))
print(f"greedy fp32: {same}/{len(a)} sequences equal to HF generate, max |logprob diff| {lp:.2e}, compile_failed={fast.compile_failed}")

# 2. bf16 reference shape: sampled-token logprobs of the engine vs the learner's (fused, chunked) logprobs
w = replace(REFERENCE, prompts=2, samples=4, completion_tokens=64)
model, tok = build_policy(w, dev), build_tokenizer(w)
eng = FastHFEngine(model, tok, compile=False); eng.stop_ids = set()
outs = eng.generate([encode_prompt(tok, p["prompt"]) for p in prompt_samples(w)], SamplingParams(n=4, max_new_tokens=64, seed=1))
batch = pad_sequences([c.prompt_ids + c.response_ids for c in outs], [len(c.prompt_ids) for c in outs], 0).to(dev)
with torch.no_grad():
    learner_lp, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask, chunk_size=4096)
sampled = torch.tensor([c.logprobs for c in outs], device=dev)
diff = (learner_lp[:, w.prompt_tokens:] - sampled).abs()
print(f"bf16 sampled vs learner logprobs: mean |diff| {diff.mean():.3e}, max {diff.max():.3e} (mean logprob {sampled.mean():.2f})")

# 3. fused chunked LM head vs plain autograd, bf16, values and gradients
hidden = torch.randn(3000, w.hidden, device=dev, dtype=torch.bfloat16, requires_grad=True)
targets = torch.randint(0, w.vocab, (3000,), device=dev)
weight = model.lm_head.weight
lp0, ent0 = logprobs_from_logits(hidden @ weight.T, targets, True)
(lp0.sum() + 0.1 * ent0.sum()).backward(); g0 = hidden.grad.float().clone(); hidden.grad = None
lp1, ent1, _ = FusedHeadLogprobs.apply(hidden, weight, targets, 1024)
(lp1.sum() + 0.1 * ent1.sum()).backward(); g1 = hidden.grad.float()
rel = lambda x, y: float((x - y).detach().norm() / y.detach().norm())
print(f"fused head bf16: rel err logprob {rel(lp1, lp0):.2e}, entropy {rel(ent1, ent0):.2e}, grad {rel(g1, g0):.2e}")
PY

echo "== rlkit bench (reference workload) frameworks=$FRAMEWORKS steps=$STEPS"
$PY -m rlkit.cli bench --frameworks "$FRAMEWORKS" --steps "$STEPS" --warmup 1 --output "$OUT/bench.json" >"$OUT/bench.log" 2>&1
status=$?
grep -E "^\[(rlkit|trl)|failed|Error|error" "$OUT/bench.log" | grep -v "^INFO" | tail -40
echo "== summary (exit $status; full log and JSON in \$OUT)"
sed -n '/^| framework/,$p' "$OUT/bench.log"
exit $status
