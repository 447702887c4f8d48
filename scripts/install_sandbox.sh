#!/usr/bin/env bash
# Install what the code rewards' sandbox (rewards/code/sandbox.py) needs: bubblewrap (bwrap) for the
# namespaces, and util-linux's setpriv and prlimit (present on Debian/Ubuntu, which mark util-linux essential).
# Idempotent: does nothing when all are on PATH. Needs apt-get and root (or sudo); exits non-zero with a
# message when it cannot install.
set -euo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
{ command -v setpriv >/dev/null 2>&1 && command -v prlimit >/dev/null 2>&1; } || missing+=(util-linux)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_sandbox: bubblewrap present ($(bwrap --version))"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_sandbox: missing ${missing[*]} and apt-get is not available; install them with your OS package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_sandbox: missing ${missing[*]}; run as root or install them (apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
echo "install_sandbox: installed ${missing[*]} ($(bwrap --version))"
