#!/usr/bin/env bash
# CI step: `rlkit eval --engine vllm` against the CPU build of vLLM, in .venv-vllm (same venv as ci_step_vllm.sh).
# setup_vllm_venv.sh is idempotent: a ready venv costs a few seconds. pytest's exit 5 (no tests) passes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_vllm_venv.sh
status=0
timeout 900 .venv-vllm/bin/python -m pytest -m vllm tests/test_eval_cli.py -q -p no:cacheprovider || status=$?
[ "$status" -eq 0 ] || [ "$status" -eq 5 ] || exit "$status"
