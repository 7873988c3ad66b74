#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install sessionlake in editable mode with its pinned Spark and Delta (the spark extra),
# plus the test tools and the report's packages. Safe to rerun: pip only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python=$candidate
      break
    fi
  done
fi
[ -n "$python" ] || { echo "install.sh: Python 3.11 or newer is needed (set PYTHON=...)" >&2; exit 1; }
command -v java >/dev/null 2>&1 || { echo "install.sh: Java 17 is needed for Spark (java not found)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[spark,test,report]"
echo "install.sh: .venv ready ($(.venv/bin/python --version), pyspark $(.venv/bin/python -c 'import pyspark; print(pyspark.__version__)'))"
