#!/usr/bin/env bash
# The test suite (what CI runs): install into .venv if needed, then pytest on real local Spark and Delta.
# Extra arguments go to pytest (e.g. -k sessionize, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/python -m pytest "$@"
