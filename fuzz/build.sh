#!/usr/bin/env bash
# Build the C fuzzers (libFuzzer + ASan + UBSan) and the seed corpora in build-fuzz/.
#
#   bash fuzz/build.sh [REV]
#
# Without REV the library sources of the working tree are used; with a git revision
# (e.g. HEAD) those of that commit (git archive), so that a long campaign fuzzes a
# fixed version while the tree changes.  Output: build-fuzz/fuzz_kernel,
# build-fuzz/fuzz_cluster (libraries with nntm_decode_cluster, format 1.2 on),
# build-fuzz/seeds/{decode,kernel,cluster}/.
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-clang}
out=build-fuzz
mkdir -p "$out"
src=.
if [ $# -ge 1 ]; then
  src="$out/src-$(git rev-parse --short "$1")"
  rm -rf "$src" && mkdir -p "$src"
  git archive "$1" lib | tar -x -C "$src"
  echo "library sources of $(git rev-parse --short "$1") in $src"
fi
srcs=$(ls "$src"/lib/common/*.c "$src"/lib/decoder/*.c)
defs=""
if grep -q "dq_enabled" "$src/lib/include/nntm/nntm.h"; then defs="-DKERNEL_INPUT_HAS_DQ"; fi
FLAGS="-g -O1 -std=c11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
  -fno-omit-frame-pointer -ffp-contract=off"
# shellcheck disable=SC2086
"$CC" $defs $FLAGS -I"$src/lib/include" -I"$src/lib" fuzz/fuzz_kernel.c $srcs -lm -pthread \
  -o "$out/fuzz_kernel"
python3 fuzz/make_seeds.py "$out"
echo "built $out/fuzz_kernel"
if grep -q "nntm_decode_cluster" "$src/lib/include/nntm/nntm.h"; then
  # shellcheck disable=SC2086
  "$CC" $FLAGS -I"$src/lib/include" -I"$src/lib" fuzz/fuzz_cluster.c $srcs -lm -pthread \
    -o "$out/fuzz_cluster"
  rm -rf "$out/seeds/cluster"
  python3 fuzz/make_cluster_seeds.py "$out/seeds/cluster"
  echo "built $out/fuzz_cluster"
fi
