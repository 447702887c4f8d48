#!/usr/bin/env bash
# Marked tests that run on a CPU machine: slow end-to-end runs, then each backend's own step.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/python -m pytest -m "slow and not vllm and not ray and not deepspeed and not gpu" -q || status=$?
[ "$status" -eq 0 ] || [ "$status" -eq 5 ] || exit "$status"  # 5 = no tests selected
for step in scripts/ci_step_*.sh; do
  [ -e "$step" ] || continue
  echo "== $step"
  bash "$step"
done
