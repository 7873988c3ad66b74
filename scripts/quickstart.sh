#!/usr/bin/env bash
# One command from a fresh clone: install into .venv, generate the sample events, sessionize them, and write the
# HTML report of the tables (data/sample/report.html). Extra arguments go to `sessionlake sample` (e.g. --users
# 10000 --days 14).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/sessionlake sample "$@"
.venv/bin/sessionlake report --output data/sample/out --html data/sample/report.html
