#!/usr/bin/env bash
# One GRPO step on one GPU for a workload preset (reference, ragged, long), rlkit and TRL side by side (docs/BENCHMARKS.md).
#
# Runs on the lent GPU machine (torch + transformers preinstalled, no registry): installs the carried
# wheels (wheels/: trl, datasets and what they and rlkit need beyond the image), checks the fast
# engine and the fused logprobs on the GPU briefly, then runs `rlkit bench`. Prints a short table last
# and writes everything under $OUT (or /tmp/rlkit-bench). Make the wheels here first:
#   .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d wheels \
#     trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pydantic==2.14.3 pydantic_core==2.50.4 \
#     annotated-types==0.8.0 typing-inspection==0.4.5 math-verify==0.9.0 latex2sympy2_extended==1.11.0 \
#     antlr4-python3-runtime==4.13.2    (rlkit's rewards import math-verify; the image lacks it)
# The decode step alone, per lever, with a kernel profile: python3 scripts/decode_bench.py --profile triton
# (PYTHONPATH=/tmp/site:$PWD after the wheels are installed; --liger times our LM head against liger-kernel's).
# The train phase alone, per lever, with a kernel profile: python3 scripts/train_bench.py --variants base,mb128 --profile base
# Usage: [PRESET=reference|ragged|long] [BENCH_ARGS="--completion-tokens 8192"] [CHECKS=0] \
#        scripts/bench_gpu.sh [FRAMEWORKS] [STEPS]   (default: reference; rlkit,trl,rlkit-hf,rlkit-eager,rlkit-plain 3)
# CHECKS=0 skips the correctness checks (scripts/gpu_checks.py), e.g. for a second preset in the same call.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/rlkit-bench}
mkdir -p "$OUT"
FRAMEWORKS=${1:-rlkit,trl,rlkit-hf,rlkit-eager,rlkit-plain}
STEPS=${2:-3}
PRESET=${PRESET:-reference}
BENCH_ARGS=${BENCH_ARGS:-}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

if [ -d wheels ] && ls wheels/*.whl >/dev/null 2>&1 && [ ! -d /tmp/site ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site wheels/*.whl || exit 1
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)" | tee -a "$OUT/gpu.txt"

if [ "${CHECKS:-1}" = 1 ]; then
  echo "== correctness on the GPU"
  $PY scripts/gpu_checks.py 2>&1 | grep -v "^INFO\|Warning" | tee "$OUT/check.log"
fi

echo "== rlkit bench --preset $PRESET $BENCH_ARGS frameworks=$FRAMEWORKS steps=$STEPS"
LOG="$OUT/bench-$PRESET.log"
$PY -m rlkit.cli bench --preset "$PRESET" $BENCH_ARGS --frameworks "$FRAMEWORKS" --steps "$STEPS" --warmup 1 \
  --output "$OUT/bench-$PRESET.json" >"$LOG" 2>&1
status=$?
grep -E "^\[(rlkit|trl)|failed|Error|error" "$LOG" | grep -v "^INFO" | tail -40
echo "== summary (exit $status; full log and JSON in \$OUT)"
sed -n '/^| framework/,$p' "$LOG"
exit $status
