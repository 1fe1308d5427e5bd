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
# 4. decodes the fuzzing regression corpus fuzz/corpus/kernel/ (corrupt and truncated
#    payloads found by the fuzzer) under the sanitizers: any report fails the job;
# 5. runs the sanitized C stream decoder build-asan/nntm-dec over every conformance stream
#    (MD5s against the .md5 files), then tests/test_cdec.py through it (byte-identical
#    output to DecoderApp, changed streams refused as the Python reader refuses them).
#
# Needs cmake, a C compiler with -fsanitize=address,undefined (gcc or clang; CC picks
# one), python3 and the nntm package (pip install -e .).  Takes well under a minute.
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
  -Ilib/include -Ilib fuzz/kernel_check.c build-asan/libnntm.a -lm -o build-asan/kernel_check

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
echo "== nntm-dec (whole-stream C decoder) under the sanitizers, every conformance stream"
python3 - <<'PY'
import json, re, subprocess, sys
streams = json.load(open("conformance/suite.json"))["streams"]
# nntm-dec reads formats up to 1.6 (tests/test_cdec.py checks that newer ones are refused)
streams = [s for s in streams
           if tuple(int(x) for x in s["format_version"].split(".")) <= (1, 6)]
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
