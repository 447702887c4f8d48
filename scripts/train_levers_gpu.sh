#!/usr/bin/env bash
# Issue 18, the train phase's levers on one GPU in one call (docs/BENCHMARKS.md, a fourth session): check 3 of
# scripts/gpu_checks.py (the fused head with the torch and Triton chunk kernels, logits kept), then
# scripts/train_bench.py on the reference preset, one process per compile scope (whole body first), each with fresh compile caches so
# that its first step's seconds are a cold compile. Logs and JSON under $OUT (or /tmp/train-levers).
# Usage: [PRESET=reference] [SCOPES="layers body"] [LONG_ROWS=0] bash scripts/train_levers_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/train-levers}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
PRESET=${PRESET:-reference}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
WHEELS=${WHEELS:-wheels}  # the carried wheels (as bench_gpu.sh); run from .gl/<name>/: WHEELS=../../wheels
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1 && [ ! -d /tmp/site ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
date -u | tee -a "$OUT/gpu.txt"

echo "== check 3: fused head, torch vs Triton chunk kernels"
CHECKS_ONLY=3 $PY scripts/gpu_checks.py 2>&1 | grep -v "^INFO\|Warning" | tee "$OUT/check3.log"

fresh() {  # a cold compile: empty Inductor and Triton caches
  export TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) TRITON_CACHE_DIR=$(mktemp -d)
}
echo "== train phase, whole-body compile, cold"
fresh
$PY scripts/train_bench.py --preset "$PRESET" --variants base,headk,headk-keep \
  --profile headk --output "$OUT/train-body.json" 2>&1 | grep -v "^INFO\|Warning" | tee "$OUT/train-body.log"
echo "== train phase, regional (per-layer) compile first, cold"
fresh
$PY scripts/train_bench.py --preset "$PRESET" --variants regional-headk-keep,regional \
  --output "$OUT/train-layers.json" 2>&1 | grep -v "^INFO\|Warning" | tee "$OUT/train-layers.log"
date -u | tee -a "$OUT/gpu.txt"
