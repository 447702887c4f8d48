#!/usr/bin/env bash
# Issue 8 on a lent GPU machine, in one call: install the carried wheels, check that Ray, DeepSpeed
# and CUDA are seen, then run the quickstart twin with runtime=ray + learner.backend=deepspeed on
# every GPU count up to N (scripts/bench_multi_gpu.sh), and the quickstart with LoRA on one GPU.
#
# The lent machines have torch, transformers, accelerate and peft but no registry; bring the rest as
# cp312 wheels (the device tool's README shows the `pip download` line): ray==2.60.0, deepspeed==0.19.8
# (built here with `DS_BUILD_OPS=0 pip wheel --no-deps --no-build-isolation deepspeed==0.19.8`),
# pydantic, pydantic_core, annotated-types, typing-inspection, math-verify, latex2sympy2_extended,
# antlr4-python3-runtime==4.13.2, hjson, jsonschema (+ jsonschema-specifications, referencing, rpds-py).
# Ray's wheel is larger than one call carries: split it (`split -b 40000000`), copy each part to
# /tmp/ray/ray.part-* on the machine in its own call; this script joins them.
# Usage: WHEELS=.whl bash scripts/gpu_scaleout.sh [N=number of GPUs]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/rlkit-scaleout}
WHEELS=${WHEELS:-.whl}
PY=${PY:-python3}
GPUS=${1:-$(nvidia-smi -L | wc -l)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false DS_ACCELERATOR=cuda
# Multi-GPU hosts here must keep NVLink multicast off (it can take the shared GPUs down).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

mkdir -p /tmp/ray
if ls /tmp/ray/ray.part-* >/dev/null 2>&1; then
  cat /tmp/ray/ray.part-* > /tmp/ray/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl && rm /tmp/ray/ray.part-*
fi
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "$WHEELS"/*.whl /tmp/ray/*.whl >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >>"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
$PY - <<'PY' 2>&1 | tee "$OUT/versions.txt" || exit 1
import deepspeed, ray, torch, transformers, peft, math_verify
from deepspeed.accelerator import get_accelerator
print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count(), torch.cuda.get_device_name(0))
print("transformers", transformers.__version__, "peft", peft.__version__, "ray", ray.__version__,
      "deepspeed", deepspeed.__version__, "accelerator", get_accelerator().device_name())
PY

status=0
echo "== runtime=ray learner.backend=deepspeed, 1..$GPUS GPU(s)"
PY=$PY OUT="$OUT/multi" bash scripts/bench_multi_gpu.sh "$GPUS" 2>&1 | tee "$OUT/multi.log" | grep -vE "^\[(sft|rl)\] step|Loading weights" || status=1
echo "== quickstart, LoRA for the GRPO stage, one GPU (local runtime)"
$PY -m rlkit.cli run recipes/quickstart.yaml device=cuda learner.lora.r=16 learner.lora.stages=[rl] rl.lr=1e-3 \
  -o "$OUT/lora" >"$OUT/lora.log" 2>&1 || status=1
grep -E "accuracy|Error|error" "$OUT/lora.log" | tail -8
exit $status
