#!/usr/bin/env bash
# Create .venv with rlkit and its test dependencies. Idempotent; safe to re-run.
# torch is pinned to the CPU build first: a plain `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev,code,plot,trl,tracking}  # tracking: its tests run in CI (they skip only where it is absent)
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$VENV/bin/python" -m pip install -q torch
  else
    "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}" || "$VENV/bin/python" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi
"$VENV/bin/python" -m pip install -q -e ".[${EXTRAS}]"
# The code rewards' sandbox (bubblewrap, via apt). Never fails set-up: without it the sandbox tests fail naming this script.
bash scripts/install_sandbox.sh || echo "setup: bubblewrap not installed; the code rewards need it (see scripts/install_sandbox.sh)" >&2
echo "setup: $VENV ready ($("$VENV/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
