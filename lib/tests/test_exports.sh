#!/bin/sh
# The shared libnntm exports exactly the functions its public headers mark NNTM_API
# (lib/include/nntm/nntm_export.h): no internal function of a stage, no missing one.
#   sh lib/tests/test_exports.sh build/libnntm.so lib/include/nntm
set -eu
lib=$1
dir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# defined text/data symbols of the dynamic symbol table
nm -D --defined-only "$lib" | awk '$2 ~ /^[TtDdBbRr]$/ { print $3 }' | sort -u >"$tmp/exported"
# NNTM_API <type> [*]nntm_name( in the public headers
cat "$dir"/nntm.h "$dir"/nntm_stream.h | grep -E '^NNTM_API ' |
    grep -oE 'nntm_[a-z0-9_]+\(' | tr -d '(' | sort -u >"$tmp/declared"
if [ ! -s "$tmp/declared" ]; then
    echo "test_exports: no NNTM_API declaration found in $dir" >&2
    exit 1
fi
if ! diff -u "$tmp/declared" "$tmp/exported" >"$tmp/diff"; then
    echo "test_exports: exported symbols of $lib differ from the NNTM_API declarations" >&2
    echo "(- declared, not exported; + exported, not declared):" >&2
    grep -E '^[-+][a-z_]' "$tmp/diff" >&2
    exit 1
fi
echo "test_exports: $(wc -l <"$tmp/exported") symbols, all declared NNTM_API"
