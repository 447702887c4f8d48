#!/usr/bin/env bash
# CI step: the DeepSpeed learner on DeepSpeed's CPU accelerator with the gloo backend.
# Installs deepspeed==0.19.8 into .venv when it is missing (idempotent). Its PyPI release is an sdist
# that imports torch while building, hence --no-build-isolation. On first use DeepSpeed JIT-builds a
# small comm op with gcc (~2 min, cached in ~/.cache/torch_extensions). Then runs the `deepspeed` tests:
# ZeRO-2/3 against the torch learner, accumulation, checkpoints, LoRA, and (slow) the tiny quickstart
# with learner.backend=deepspeed gaining >= 15 points of held-out accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
started=$(date +%s)
if ! "$PY" -c "import deepspeed, sys; sys.exit(deepspeed.__version__ != '0.19.8')" 2>/dev/null; then
  "$PY" -m pip install -q setuptools wheel
  "$PY" -m pip install -q --no-build-isolation "deepspeed==0.19.8"
fi
echo "ci_step_deepspeed: deepspeed ready after $(( $(date +%s) - started )) s"
status=0
"$PY" -m pytest -m "deepspeed and not ray and not vllm and not gpu" -q -p no:warnings -s "$@" || status=$?
echo "ci_step_deepspeed: finished in $(( $(date +%s) - started )) s (pytest exit $status)"
[ "$status" -eq 0 ] || [ "$status" -eq 5 ] || exit "$status"  # 5 = no tests selected
