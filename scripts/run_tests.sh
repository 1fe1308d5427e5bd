#!/usr/bin/env bash
# The whole test suite: installs the test dependencies, builds the C library,
# runs the C unit tests (ctest), the linter and the Python tests (pytest; tests/test_cdec.py
# runs build/nntm-dec, which the cmake build makes with the library).
#
#   bash scripts/run_tests.sh [--system] [pytest arguments ...]
#
# It pip-installs the package (editable) and its test extra into the python3 on
# PATH, so it wants that python3 to be a virtual environment's (or a conda
# environment's): make one with  python3 -m venv .venv && . .venv/bin/activate
# Outside one it stops (exit 2) instead of installing into the system's Python,
# unless asked to with --system or NNTM_SYSTEM_PYTHON=1.
set -euo pipefail
cd "$(dirname "$0")/.."

system=${NNTM_SYSTEM_PYTHON:-0}
args=()
for arg in "$@"; do
  if [ "$arg" = "--system" ]; then system=1; else args+=("$arg"); fi
done

# 0: a virtual environment (venv/virtualenv) or a conda environment; 1: neither
in_env='import os, sys
conda = os.path.isdir(os.path.join(sys.prefix, "conda-meta"))
sys.exit(0 if sys.prefix != sys.base_prefix or conda else 1)'
if ! command -v python3 >/dev/null; then
  echo "run_tests.sh: no python3 on PATH (NNTM needs Python 3.11 or later)" >&2
  exit 2
fi
if [ "$system" != "1" ] && ! python3 -c "$in_env"; then
  cat >&2 <<MSG
run_tests.sh: python3 ($(command -v python3)) is not in a virtual environment, and this
script would pip install into it. Make and activate one first:
    python3 -m venv .venv && . .venv/bin/activate
or install into this interpreter anyway with --system (or NNTM_SYSTEM_PYTHON=1).
MSG
  exit 2
fi

if ! command -v cmake >/dev/null || ! command -v cc >/dev/null; then
  echo "== installing cmake and a C compiler"
  apt-get update -qq && apt-get install -y -qq cmake build-essential >/dev/null
fi

echo "== pip install -e .[test]"
python3 -m pip install -q --disable-pip-version-check -e ".[test]"

echo "== C library, nntm-dec and C unit tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j 2 >/dev/null
ctest --test-dir build --output-on-failure

echo "== ruff"
python3 -m ruff check python tests scripts benchmarks fuzz

echo "== pytest"
python3 -m pytest -q ${args[@]+"${args[@]}"}
