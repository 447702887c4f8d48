#!/usr/bin/env bash
# Install bubblewrap (bwrap), the namespace sandbox the code rewards (unit_tests, code_quality) run
# model-written programs in. Idempotent: does nothing when bwrap is already on PATH.
# Needs apt-get and root (or sudo); exits non-zero with a message when it cannot install.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then
  echo "install_sandbox: bubblewrap present ($(bwrap --version))"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_sandbox: bubblewrap is missing and apt-get is not available; install the 'bubblewrap' package with your OS package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_sandbox: bubblewrap is missing; run as root or install 'bubblewrap' (apt-get install bubblewrap)" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq bubblewrap >/dev/null
echo "install_sandbox: installed $(bwrap --version)"
