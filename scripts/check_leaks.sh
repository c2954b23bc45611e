#!/usr/bin/env bash
# Build the C-level core tests with AddressSanitizer + LeakSanitizer (+ UBSan) and run them on 1, 2
# and 4 ranks; any memory error or leak in the core fails the run.  MPI_Init's own allocations are
# suppressed (xbraid/tests/lsan.supp).  With CHECKER=valgrind, runs memcheck instead.
# Usage: scripts/check_leaks.sh [cycles]   (cycles: how often to repeat the whole test matrix)
set -euo pipefail
cd "$(dirname "$0")/.."
MPICC=${MPICC:-mpicc}
MPIEXEC=${MPIEXEC:-mpiexec}
cycles=${1:-2}
mkdir -p build
if [ "${CHECKER:-asan}" = valgrind ]; then
  $MPICC -std=c99 -g -O1 -Wall -Wextra -Ixbraid xbraid/*.c xbraid/tests/test_core.c -lm -o build/test_core
  for p in 1 2; do
    $MPIEXEC -n $p valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=3 \
      --suppressions=/dev/null build/test_core "$cycles"
  done
else
  $MPICC -std=c99 -g -O1 -Wall -Wextra -Werror -fsanitize=address,undefined -fno-sanitize-recover=all \
    -fno-omit-frame-pointer -Ixbraid xbraid/*.c xbraid/tests/test_core.c -lm -o build/test_core_asan
  for p in 1 2 4; do
    echo "== test_core on $p ranks (AddressSanitizer, LeakSanitizer)"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 LSAN_OPTIONS=suppressions=$PWD/xbraid/tests/lsan.supp \
      timeout 600 $MPIEXEC -n $p build/test_core_asan "$cycles"
  done
fi
echo "check_leaks: ok"
