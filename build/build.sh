#!/usr/bin/env bash
# Build the single executable into build/out/dist/edgegw (build/out is ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
"$python" -m PyInstaller --noconfirm --clean \
    --distpath build/out/dist --workpath build/out/work \
    build/edgegw.spec
echo "built build/out/dist/edgegw"
