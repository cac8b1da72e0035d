#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with maml_probe and its test tools.
#
#   bash scripts/setup.sh
#
# - PyTorch: installs torch==2.13.0 first (here it comes from a local CPU wheel; elsewhere
#   pip takes that release from PyPI). Set MAML_PROBE_TORCH to another requirement
#   (e.g. "torch>=2.4") to keep a different build.
# - Chromium for the browser test of the explorer: installed from Debian's packages when
#   apt-get is available and we are root; otherwise that one test skips and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "${MAML_PROBE_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install --quiet -e ".[dev]"
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "setup: could not install chromium; the browser test will skip" >&2
fi
echo "setup: done. Activate with: source .venv/bin/activate"
