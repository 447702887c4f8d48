#!/usr/bin/env bash
# CI step: the vLLM engine's tests (weight sync included) and the OpenAI-compatible generation backend against
# a real vLLM server (kill and restart included), on the CPU build of vLLM, in .venv-vllm.
# setup_vllm_venv.sh is idempotent: a ready venv costs a few seconds. pytest's exit 5 (no tests) passes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_vllm_venv.sh
status=0
timeout 1500 .venv-vllm/bin/python -m pytest -m vllm tests/test_vllm_engine.py tests/test_generation_vllm.py -q -p no:cacheprovider || status=$?
[ "$status" -eq 0 ] || [ "$status" -eq 5 ] || exit "$status"
