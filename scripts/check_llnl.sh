#!/usr/bin/env bash
# Build braidnet against LLNL XBraid (the pinned snapshot in ../shared/xbraid, next to the checkout)
# and run the test suite there.  Tests marked bundled_core skip themselves (tests/conftest.py).
#
#   1. extract and build LLNL XBraid in a temporary folder (make, with the MPI's mpicc);
#   2. copy the checkout's files (tracked and untracked-not-ignored: the working tree as it is) to
#      that folder and build braidnet in place there with XBRAID_DIR: nothing is installed, and the
#      checkout itself and its build are left alone;
#   3. run `python -m pytest -q` from the copy (its braidnet shadows any installed one; the MPI
#      tests launch mpiexec with the imported braidnet's PYTHONPATH), and check that the core wrote
#      no braid.out.* files.
#
# Quiet on success (one line); on failure the log that failed and a non-zero exit.  Without the
# snapshot it says so in one line and exits 0.
#
# Usage: scripts/check_llnl.sh [pytest arguments, e.g. tests/test_braid_core.py]
# Environment:
#   BRAIDNET_LLNL_PYTHON   the Python to build and test with: a virtual environment with numpy,
#                          Cython, mpi4py, an MPI (mpicc, mpiexec) and pytest.  Default: the active
#                          virtual environment's, else the checkout's .venv, else python3.
#   BRAIDNET_XBRAID_TARBALL  another snapshot (default ../shared/xbraid/xbraid-52178c8.tar.gz)
#   BRAIDNET_COMPARE_CORES=1  also run scripts/compare_cores.py (needs the checkout built in place)
#   BRAIDNET_LLNL_KEEP=1   keep the temporary folder (its path is printed; kept anyway on failure)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tarball=${BRAIDNET_XBRAID_TARBALL:-$root/../shared/xbraid/xbraid-52178c8.tar.gz}
if [ ! -f "$tarball" ]; then
  echo "check_llnl: skipped: no LLNL XBraid snapshot at $tarball"
  exit 0
fi

if [ -n "${BRAIDNET_LLNL_PYTHON:-}" ]; then py=$BRAIDNET_LLNL_PYTHON
elif [ -n "${VIRTUAL_ENV:-}" ]; then py=$VIRTUAL_ENV/bin/python
elif [ -x .venv/bin/python ]; then py=$root/.venv/bin/python
else py=$(command -v python3)
fi
# the environment's bin first: its mpicc and mpiexec are the MPI that mpi4py uses
export PATH="$(dirname "$py"):$PATH"
if ! "$py" -c "import numpy, Cython, mpi4py, pytest" 2> /dev/null; then
  echo "check_llnl: FAILED: $py lacks numpy, Cython, mpi4py or pytest (set BRAIDNET_LLNL_PYTHON)" >&2
  exit 1
fi
mpicc=$(command -v mpicc || true)
if [ -z "$mpicc" ]; then
  echo "check_llnl: FAILED: no mpicc next to $py or on PATH" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/braidnet-llnl.XXXXXX")
if [ "${BRAIDNET_LLNL_KEEP:-0}" = 1 ]; then
  echo "check_llnl: working in $work (kept)"
else
  trap 'rm -rf "$work"' EXIT
fi
t0=$(date +%s)

fail() {   # fail WHAT LOG: the log's end and a non-zero exit; the folder is kept for a look
  trap - EXIT
  echo "check_llnl: FAILED: $1 (log: $2; the folder $work is kept)" >&2
  tail -n 80 "$2" >&2 || true
  echo "check_llnl: FAILED: $1" >&2
  exit 1
}

# 1. LLNL XBraid
tar xzf "$tarball" -C "$work" || fail "extracting $tarball" /dev/null
make -C "$work/xbraid/braid" debug=no MPICC="$mpicc" > "$work/xbraid.log" 2>&1 \
  || fail "building LLNL XBraid" "$work/xbraid.log"

# 2. braidnet against it, in a copy of the working tree
src=$work/braidnet
mkdir -p "$src"
git -C "$root" ls-files -z --cached --others --exclude-standard \
  | (cd "$root" && xargs -0 cp --parents -t "$src" 2> /dev/null || true)
[ -f "$src/setup.py" ] || fail "copying the checkout" /dev/null
(cd "$src" && XBRAID_DIR="$work/xbraid" "$py" setup.py build_ext --inplace -j "$(nproc)") \
  > "$work/build.log" 2>&1 || fail "building braidnet against LLNL XBraid" "$work/build.log"
(cd "$src" && "$py" -c "
import braidnet.braid as b, sys
assert b.__file__.startswith('$src/'), b.__file__
sys.exit(0 if not b.BUNDLED_CORE else 'braidnet.braid was built against the bundled core')
") > "$work/import.log" 2>&1 || fail "importing the LLNL build of braidnet.braid" "$work/import.log"

# 3. the test suite
if ! (cd "$src" && "$py" -m pytest -q -p no:cacheprovider "$@") > "$work/pytest.log" 2>&1; then
  fail "the test suite against LLNL XBraid" "$work/pytest.log"
fi
stray=$(cd "$src" && find . -name 'braid.out*' -o -name 'braid_timings*' | head -5)
[ -z "$stray" ] || { echo "$stray" > "$work/stray.log"; fail "the core wrote files: $stray" "$work/stray.log"; }

# 4. both cores side by side (BRAIDNET_COMPARE_CORES=1; needs the checkout built in place, as
#    scripts/test.sh leaves it): the reference problems over an option matrix, whose table is
#    printed, and a 20-iteration peaks training run whose histories must agree to 1e-9
if [ "${BRAIDNET_COMPARE_CORES:-0}" = 1 ]; then
  "$py" scripts/compare_cores.py --bundled "$root" --llnl "$src" > "$work/compare.log" 2>&1 \
    || fail "comparing the cores (scripts/compare_cores.py)" "$work/compare.log"
  cat "$work/compare.log"
  for core in bundled llnl; do
    dir=$root; [ "$core" = llnl ] && dir=$src
    (cd "$dir" && PYTHONPATH="$dir" OPENBLAS_NUM_THREADS=1 "$(dirname "$py")/mpiexec" -n 2 "$py" -m braidnet.cli \
      train examples/peaks_plain.toml --set optimizer.iterations=20 --out "$work/peaks_$core") \
      > "$work/peaks_$core.log" 2>&1 || fail "the 20-iteration peaks run on the $core core" "$work/peaks_$core.log"
  done
  "$py" - "$work/peaks_bundled/history.csv" "$work/peaks_llnl/history.csv" > "$work/peaks.log" 2>&1 <<'PY' \
    || fail "the peaks histories of the two cores differ" "$work/peaks.log"
import csv, sys
a, b = ([{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(p))] for p in sys.argv[1:])
assert len(a) == len(b) == 21, (len(a), len(b))
# decisions and counts exactly, values to 1e-9 (the cores do the same operations in the same order:
# measured identical)
exact = ("primal_iters", "adjoint_iters", "step", "ls_trials", "train_accuracy", "layer_steps")
worst = {k: 0.0 for k in ("objective", "loss", "grad_norm", "primal_rnorm", "adjoint_rnorm")}
for ra, rb in zip(a, b):
    for k in exact:
        assert ra[k] == rb[k], (int(ra["iteration"]), k, ra[k], rb[k])
    for k in worst:
        assert abs(ra[k] - rb[k]) <= 1e-9 * abs(rb[k]) + 1e-14, (int(ra["iteration"]), k, ra[k], rb[k])
        if abs(rb[k]) > 1e-14:
            worst[k] = max(worst[k], abs(ra[k] - rb[k]) / abs(rb[k]))
print("peaks, 20 iterations on 2 ranks, bundled vs LLNL core: same iterations, steps and accuracies; "
      "largest relative differences " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
PY
  cat "$work/peaks.log"
fi

summary=$(tail -n 1 "$work/pytest.log" | sed 's/=//g; s/^ *//; s/ *$//')
echo "check_llnl: LLNL XBraid $(basename "$tarball" .tar.gz): $summary; $(( $(date +%s) - t0 )) s in all"
