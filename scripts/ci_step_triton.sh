#!/usr/bin/env bash
# CI step: rlkit's Triton kernels (decode attention, one-pass decode sampling, the fused LM head's passes) through
# Triton's CPU interpreter, against their torch references. Triton is not a dependency of a CPU install (GPU images
# carry it), so it goes into .triton-site, on PYTHONPATH for this step only: the rest of the suite runs without it,
# as a user's CPU install does (those three test files skip there). A ready .triton-site costs a second.
set -euo pipefail
cd "$(dirname "$0")/.."
TRITON_VERSION=3.9.0
if ! PYTHONPATH=.triton-site .venv/bin/python -c "import triton" 2>/dev/null; then
  .venv/bin/python -m pip install -q --no-deps --target .triton-site "triton==$TRITON_VERSION"
fi
PYTHONPATH=.triton-site .venv/bin/python -c "import triton; print('triton', triton.__version__, 'interpreter tests')"
PYTHONPATH=.triton-site timeout 900 .venv/bin/python -m pytest -q -p no:cacheprovider -rs \
  tests/test_decode_attention.py tests/test_decode_sampling.py tests/test_head_kernels.py
