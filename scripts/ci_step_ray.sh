#!/usr/bin/env bash
# CI step: the Ray runtime on a local Ray instance with CPU actors.
# Installs ray[default]==2.60.0 into .venv when it is missing (idempotent), then runs the `ray` tests:
# placement, the data-parallel learner group, weight sync (colocated, split over gloo, LoRA), a dead
# actor, and (slow) the tiny quickstart with runtime=ray gaining >= 15 points of held-out accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
started=$(date +%s)
if ! "$PY" -c "import ray, sys; sys.exit(ray.__version__ != '2.60.0')" 2>/dev/null; then
  "$PY" -m pip install -q "ray[default]==2.60.0"
fi
echo "ci_step_ray: ray ready after $(( $(date +%s) - started )) s"
export RAY_USAGE_STATS_ENABLED=0
status=0
"$PY" -m pytest -m "ray and not vllm and not gpu" -q -p no:warnings -s "$@" || status=$?
echo "ci_step_ray: finished in $(( $(date +%s) - started )) s (pytest exit $status)"
[ "$status" -eq 0 ] || [ "$status" -eq 5 ] || exit "$status"  # 5 = no tests selected
