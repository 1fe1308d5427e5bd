#!/usr/bin/env bash
# The whole test suite: installs the test dependencies, builds the C library,
# runs the C unit tests (ctest), the linter and the Python tests (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cmake >/dev/null || ! command -v cc >/dev/null; then
  echo "== installing cmake and a C compiler"
  apt-get update -qq && apt-get install -y -qq cmake build-essential >/dev/null
fi

echo "== pip install -e .[test]"
python3 -m pip install -q --disable-pip-version-check -e ".[test]"

echo "== C library and C unit tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j 2 >/dev/null
ctest --test-dir build --output-on-failure

echo "== ruff"
python3 -m ruff check python tests scripts benchmarks fuzz

echo "== pytest"
python3 -m pytest -q "$@"
