#!/usr/bin/env bash
# Sanitizer job (CI): the C library with AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   bash scripts/run_sanitizers.sh
#
# 1. builds lib/ and its C unit tests with NNTM_SANITIZE=ON in build-asan/ and runs ctest;
# 2. builds fuzz/kernel_check.c against build-asan/libnntm.a, with the same sanitizers;
# 3. runs the conformance suite through it: ConformanceApp --kernel-tool hands every
#    QUANTIZED tensor of every stream to the sanitized decoder and checks the MD5s
#    against the hash units and the .md5 files (no LD_PRELOAD into Python: the
#    sanitized code runs in its own process);
# 4. decodes the fuzzing regression corpora fuzz/corpus/kernel/ (kernel cases) and
#    fuzz/corpus/cluster/ (clustered tensor cases, fuzz/cluster_check.c), corrupt and
#    truncated payloads found by the fuzzers, under the sanitizers: any report fails;
# 5. the Python decoder on the sanitized C core: builds the cffi extension with
#    ASan+UBSan into build-asan/py/nntm/ (next to a copy of python/nntm; the in-place
#    extension of pip install -e is not touched), checks that it is the one imported and
#    that ASan is live in it (a deliberate overflow must be reported), then runs the
#    decoding tests with the ASan runtime preloaded (LD_PRELOAD) and leak detection off
#    (CPython does not free everything at exit).
# 6. runs the sanitized C stream decoder build-asan/nntm-dec over every conformance stream
#    (MD5s against the .md5 files), then tests/test_cdec.py through it (byte-identical
#    output to DecoderApp, changed streams refused as the Python reader refuses them).
#
# Needs cmake, a C compiler with -fsanitize=address,undefined (gcc or clang; CC picks
# one), python3 and the nntm package with its test extras (pip install -e ".[test]").
# Takes about 3 minutes on 2 cores under load: ctest and step 5 (PY_TESTS picks its tests).
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-cc}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

echo "== C library and unit tests with ASan+UBSan (build-asan/)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNNTM_SANITIZE=ON \
  -DCMAKE_C_COMPILER="$CC" >/dev/null
cmake --build build-asan -j 2 >/dev/null
ctest --test-dir build-asan --output-on-failure

echo "== fuzz/kernel_check.c against the sanitized library"
defs=""
if grep -q "dq_enabled" lib/include/nntm/nntm.h; then defs="-DKERNEL_INPUT_HAS_DQ"; fi
# shellcheck disable=SC2086
"$CC" $defs -std=c11 -g -O1 $SAN -ffp-contract=off -Wall -Wextra -Werror \
  -Ilib/include -Ilib fuzz/kernel_check.c build-asan/libnntm.a -lm -pthread -o build-asan/kernel_check

echo "== conformance suite through the sanitized decoder"
python3 -m nntm.apps.conformance --suite conformance/suite.json \
  --kernel-tool build-asan/kernel_check

echo "== fuzzing regression corpus (fuzz/corpus/kernel/) under the sanitizers"
shopt -s nullglob
corpus=(fuzz/corpus/kernel/*)
if [ ${#corpus[@]} -gt 0 ]; then
  printf '%s\0' "${corpus[@]}" | xargs -0 -n 200 build-asan/kernel_check --errors-ok
fi
echo "${#corpus[@]} corpus inputs decoded cleanly"

echo "== fuzz/cluster_check.c: cluster seeds and regression corpus (fuzz/corpus/cluster/)"
# shellcheck disable=SC2086
"$CC" -std=c11 -g -O1 $SAN -ffp-contract=off -Wall -Wextra -Werror \
  -Ilib/include -Ilib fuzz/cluster_check.c build-asan/libnntm.a -lm -pthread -o build-asan/cluster_check
rm -rf build-asan/cluster-seeds
python3 fuzz/make_cluster_seeds.py build-asan/cluster-seeds
build-asan/cluster_check build-asan/cluster-seeds/*   # the conformance tensors must decode
ccorpus=(fuzz/corpus/cluster/*)
if [ ${#ccorpus[@]} -gt 0 ]; then
  printf '%s\0' "${ccorpus[@]}" | xargs -0 -n 200 build-asan/cluster_check --errors-ok
fi
echo "${#ccorpus[@]} cluster corpus inputs decoded cleanly"

echo "== the Python decoder on the C core built with ASan+UBSan (build-asan/py/)"
py=build-asan/py
root=$PWD
rm -rf "$py" && mkdir -p "$py"
cp -r python/nntm "$py/nntm"
rm -rf "$py"/nntm/*.so "$py"/nntm/__pycache__ "$py"/nntm/*/__pycache__
# CFLAGS/LDFLAGS come after Python's own flags: -fno-wrapv undoes its -fwrapv, so that
# UBSan sees signed overflow.  The build runs in $py (the source paths are absolute).
(cd "$py" && CC="$CC" CFLAGS="-fno-wrapv $SAN" LDFLAGS="-fsanitize=address,undefined" \
  python3 -c "import sys; sys.path.insert(0, sys.argv[1])
from _build_ffi import ffibuilder
ffibuilder.compile(tmpdir='.')" "$root/python/nntm" >/dev/null)
so=$(ls "$py"/nntm/_nntm_c*.so)
nm -D "$so" | grep __asan_report >/dev/null || { echo "$so: no ASan instrumentation"; exit 1; }
# the ASan runtime: the one the extension links (gcc), else the compiler's (clang)
asan_rt=$(ldd "$so" | awk '/libasan|libclang_rt.asan/ {print $3; exit}')
if [ -z "$asan_rt" ]; then
  asan_rt=$("$CC" -print-file-name=libclang_rt.asan-x86_64.so)
fi
[ -f "$asan_rt" ] || { echo "no ASan runtime found for $so"; exit 1; }
run_asan() {
  PYTHONPATH="$root/$py${PYTHONPATH:+:$PYTHONPATH}" LD_PRELOAD="$asan_rt" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "$@"
}
loaded=$(run_asan python3 -c "import nntm._nntm_c as m; print(m.__file__)")
echo "extension: $loaded (ASan runtime $asan_rt)"
[ "$(realpath "$loaded")" = "$(realpath "$so")" ] || { echo "not the sanitized extension"; exit 1; }
# ASan must be live in it: 16 float32 samples into a 4-byte malloc must be reported.
if run_asan python3 - >/dev/null 2>build-asan/py-canary.log <<'PYEOF'
import ctypes

from nntm._nntm_c import ffi, lib

p = ffi.new("nntm_kernel_params *")
p.rows, p.cols, p.num_gt_flags = 4, 4, 1
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
out = ffi.cast("void *", libc.malloc(4))
lib.nntm_reconstruct(p, ffi.new("int32_t[]", 16), 16, 0, ffi.NULL, out)
PYEOF
then
  echo "the deliberate overflow went unreported: ASan is not active"; exit 1
fi
grep -q "heap-buffer-overflow" build-asan/py-canary.log || {
  cat build-asan/py-canary.log; echo "the deliberate overflow: no ASan report"; exit 1; }
echo "ASan live in the extension (the deliberate overflow was reported)"
# the tests that decode (and encode) through the C core: about 1 min under ASan
PY_TESTS=${PY_TESTS:-tests/test_codec.py tests/test_conformance.py tests/test_cluster.py
  tests/test_core.py tests/test_prediction.py tests/test_intra.py tests/test_row_pred.py
  tests/test_dq32.py tests/test_suffix_ctx.py tests/test_prob_window.py}
# shellcheck disable=SC2086
run_asan python3 -m pytest -q -x -p no:cacheprovider $PY_TESTS

echo "== nntm-dec (whole-stream C decoder) under the sanitizers, every conformance stream"
python3 - <<'PY'
import json, re, subprocess, sys
streams = json.load(open("conformance/suite.json"))["streams"]
# nntm-dec reads formats up to 1.7 (tests/test_cdec.py checks that newer ones are refused)
streams = [s for s in streams
           if tuple(int(x) for x in s["format_version"].split(".")) <= (1, 7)]
bad = 0
for s in streams:
    cmd = ["build-asan/nntm-dec", "-b", s["bitstream"], "-o", "build-asan/cdec.safetensors"]
    if s.get("ref_model"):
        cmd += ["--RefModel", s["ref_model"]]
    p = subprocess.run(cmd, capture_output=True, text=True)
    got = re.findall(r"\[MD5: ([0-9a-f]{32}) OK\]", p.stdout)
    want = [line.split()[0] for line in open(s["md5_file"]) if line.strip()]
    if p.returncode or got != want:
        bad += 1
        print(f"{s['name']}: rc {p.returncode}, MD5s {'match' if got == want else 'differ'}\n"
              f"{p.stderr}", file=sys.stderr)
print(f"{len(streams) - bad} of {len(streams)} streams decoded by build-asan/nntm-dec to their MD5s")
sys.exit(1 if bad else 0)
PY
rm -f build-asan/cdec.safetensors
NNTM_DEC=build-asan/nntm-dec python3 -m pytest -q -p no:cacheprovider tests/test_cdec.py
echo "== sanitizers: all clean"
