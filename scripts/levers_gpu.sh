#!/usr/bin/env bash
# Issue 18's levers on one GPU in one call (docs/BENCHMARKS.md): chosen GPU checks, then the decode step alone
# (scripts/decode_bench.py, one line per variant, a kernel profile of one), then the train phase alone
# (scripts/train_bench.py, likewise), each step under its own time limit so one slow step cannot eat the call.
# Logs and JSON under $OUT (or /tmp/levers). Empty variables skip a step.
# Usage: [CHECKS_ONLY=1,5] [DECODE="triton+fold,..."] [DECODE_REPEATS=3] [DECODE_PROFILE=triton+fold] [TRAIN="regional-headk-keep,..."]
#        [TRAIN_PROFILE=...] [PRESET=reference] [T_CHECKS=120 T_DECODE=300 T_TRAIN=240] [WHEELS=wheels] \
#        bash scripts/levers_gpu.sh
# (the fourth session's train-phase call ran this script's predecessor, scripts/train_levers_gpu.sh, at b85b4a8)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/levers}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
PRESET=${PRESET:-reference}
export PYTHONUNBUFFERED=1
WHEELS=${WHEELS:-wheels}  # the carried wheels (as bench_gpu.sh); run from .gl/<name>/: WHEELS=../../wheels
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1 && [ ! -d /tmp/site ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
date -u | tee -a "$OUT/gpu.txt"
quiet() { grep -v "^INFO\|Warning"; }

if [ -n "${CHECKS_ONLY:-}" ]; then
  echo "== checks $CHECKS_ONLY"
  CHECKS_ONLY=$CHECKS_ONLY timeout "${T_CHECKS:-120}" $PY scripts/gpu_checks.py 2>&1 | quiet | tee "$OUT/checks.log"
fi
if [ -n "${DECODE:-}" ]; then
  echo "== decode step: $DECODE"
  timeout "${T_DECODE:-300}" $PY scripts/decode_bench.py --preset "$PRESET" --variants "$DECODE" \
    --repeats "${DECODE_REPEATS:-3}" --profile "${DECODE_PROFILE:-}" 2>&1 | quiet | tee "$OUT/decode.log"
fi
if [ -n "${TRAIN:-}" ]; then
  echo "== train phase: $TRAIN"
  timeout "${T_TRAIN:-240}" $PY scripts/train_bench.py --preset "$PRESET" --variants "$TRAIN" \
    --profile "${TRAIN_PROFILE:-}" --output "$OUT/train.json" 2>&1 | quiet | tee "$OUT/train.log"
fi
date -u | tee -a "$OUT/gpu.txt"
