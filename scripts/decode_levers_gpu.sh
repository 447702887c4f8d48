#!/usr/bin/env bash
# Issue 18, the decode step's GEMMs and attention merge, in one GPU call (docs/BENCHMARKS.md, a fourth session):
# the correctness checks with the kernels on (greedy fp32 vs transformers generate; compaction), the decode-GEMM
# micro-benchmark (cuBLAS vs the Triton decode linear), and scripts/decode_bench.py with the levers one by one.
# Logs under $OUT. Usage: bash scripts/decode_levers_gpu.sh   (DECODE_VARIANTS, DECODE_PROFILE; T_GEMM1, T_CHECKS,
# T_DECODE, T_GEMM2, T_GEMM3: each part's time limit in seconds, in the order they run)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/rlkit-levers}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
WHEELS=${WHEELS:-wheels}  # the carried wheels (scripts/bench_gpu.sh); from a copy under .gl/NAME: WHEELS=../../wheels
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1 && [ ! -d /tmp/site ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)"; } | tee "$OUT/gpu.txt"
echo "== decode-GEMM micro-benchmark, 0.5B at 128 rows"
timeout ${T_GEMM1:-100} $PY scripts/decode_gemm_bench.py --models 0.5B --rows 128 2>&1 | tee "$OUT/gemm-05b-128.log"
echo "== checks 1 and 5, kernels on"
CHECKS_ONLY=1,5 timeout ${T_CHECKS:-90} $PY scripts/gpu_checks.py 2>&1 | grep -v "^INFO\|Warning" | tee "$OUT/checks.log"
echo "== decode_bench"
timeout ${T_DECODE:-170} $PY scripts/decode_bench.py --variants "${DECODE_VARIANTS:-triton,triton+fold,triton+tlinear+fold}" \
  --profile "${DECODE_PROFILE:-triton+tlinear+fold}" 2>&1 | grep -v "^INFO\|Warning" | tee "$OUT/decode.log"
echo "== decode-GEMM micro-benchmark, 1.5B at 128 rows, 0.5B at 64 and 32"
timeout ${T_GEMM2:-60} $PY scripts/decode_gemm_bench.py --models 1.5B --rows 128 2>&1 | tee "$OUT/gemm-15b-128.log"
timeout ${T_GEMM3:-60} $PY scripts/decode_gemm_bench.py --models 0.5B --rows 64,32 2>&1 | tee "$OUT/gemm-05b-64-32.log"
date -u | tee -a "$OUT/gpu.txt"
