#!/usr/bin/env bash
# Build the SIMD kernels of braidnet._kernels (braidnet/kernels/bn_kernels.c) with their stand-alone
# C test (test_kernels.c: no Python, no BLAS; the double kernels and their float twins) under
# AddressSanitizer + UBSan, -Wall -Wextra -Werror, twice: as the extension builds them (x86-64-v3 clone picked by CPU features where GCC makes one)
# and baseline-only (-DBN_NO_CLONES), then run both.  Quiet on success; exits non-zero on failure.
# The kernels are compiled at -O3 like the extension: below -O2 GCC does not contract a*b+c into
# FMAs, so the arithmetic would not be the one that ships.
# Usage: scripts/check_kernels.sh [-v]   (-v: the test prints its summary)
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-cc}
K=braidnet/kernels
B=build/check_kernels
mkdir -p $B
flags=(-g -Wall -Wextra -Werror -fsanitize=address,undefined -fno-sanitize-recover=all
       -fno-omit-frame-pointer)
log=$B/build.log
: > "$log"
# the two -O3 compiles are slow (big inlined kernels): run them side by side
$CC -O3 "${flags[@]}" -c $K/bn_kernels.c -o $B/bn_kernels.o >> "$log" 2>&1 & p1=$!
$CC -O3 "${flags[@]}" -DBN_NO_CLONES -c $K/bn_kernels.c -o $B/bn_kernels_base.o >> "$log" 2>&1 & p2=$!
ok=1
$CC -O1 "${flags[@]}" -c $K/test_kernels.c -o $B/test_kernels.o >> "$log" 2>&1 || ok=0
wait $p1 || ok=0
wait $p2 || ok=0
if [ $ok = 1 ]; then
  $CC "${flags[@]}" $B/bn_kernels.o $B/test_kernels.o -lm -o $B/test_kernels >> "$log" 2>&1 || ok=0
  $CC "${flags[@]}" $B/bn_kernels_base.o $B/test_kernels.o -lm -o $B/test_kernels_base >> "$log" 2>&1 || ok=0
fi
if [ $ok = 0 ]; then
  cat "$log" >&2
  echo "check_kernels: BUILD FAILED" >&2
  exit 1
fi
for t in test_kernels test_kernels_base; do
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 $B/$t "$@"; then
    echo "check_kernels: $t FAILED" >&2
    exit 1
  fi
done
echo "check_kernels: ok"
