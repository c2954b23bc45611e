#!/usr/bin/env bash
# Build braidnet against LLNL XBraid (the pinned snapshot in ../shared/xbraid, next to the checkout),
# install it into a second, fresh virtual environment and run the test suite there.  Tests marked
# bundled_core skip themselves (tests/conftest.py).
#
#   1. make a fresh virtual environment in a temporary folder and install braidnet's dependencies
#      (numpy, scipy-openblas32, scipy, Cython, mpi4py, MPICH, pytest, matplotlib, scikit-learn) into it;
#   2. extract LLNL XBraid there and build it (make, with that environment's mpicc);
#   3. copy the checkout's files (tracked and untracked-not-ignored: the working tree as it is) to
#      the temporary folder and `XBRAID_DIR=... pip install --no-build-isolation -e` the copy into
#      the second environment: the checkout, its build and its environment are left alone;
#   4. run pytest from the copy with the second environment, and check that the core wrote no
#      braid.out.* files.
#
# Quiet on success (one line); on failure the log that failed and a non-zero exit.  Without the
# snapshot it says so in one line and exits 0.
#
# Usage: scripts/check_llnl.sh [pytest arguments, e.g. tests/test_braid_core.py]
# Environment:
#   BRAIDNET_LLNL_PYTHON   use this Python (an environment that already has numpy, Cython, mpi4py, an
#                          MPI with mpicc and mpiexec, and pytest) instead of a fresh environment
#   BRAIDNET_XBRAID_TARBALL  another snapshot (default ../shared/xbraid/xbraid-52178c8.tar.gz)
#   BRAIDNET_COMPARE_CORES=1  also compare with the checkout's own (bundled) build: scripts/compare_cores.py
#                          and a 20-iteration peaks run on both cores.  The bundled side runs with
#                          the active virtual environment's Python, else the checkout's .venv (built
#                          in place, as scripts/test.sh leaves it)
#   BRAIDNET_LLNL_KEEP=1   keep the temporary folder (its path is printed; kept anyway on failure)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tarball=${BRAIDNET_XBRAID_TARBALL:-$root/../shared/xbraid/xbraid-52178c8.tar.gz}
if [ ! -f "$tarball" ]; then
  echo "check_llnl: skipped: no LLNL XBraid snapshot at $tarball"
  exit 0
fi

# the checkout's own environment: the bundled side of the comparison, and the base of the new one
if [ -n "${VIRTUAL_ENV:-}" ]; then bundled_py=$VIRTUAL_ENV/bin/python
elif [ -x .venv/bin/python ]; then bundled_py=$root/.venv/bin/python
else bundled_py=$(command -v python3)
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

# 1. the second environment
if [ -n "${BRAIDNET_LLNL_PYTHON:-}" ]; then
  py=$BRAIDNET_LLNL_PYTHON
else
  py=$work/venv/bin/python
  { "$bundled_py" -m venv "$work/venv" \
    && "$py" -m pip install -q --disable-pip-version-check --upgrade pip "setuptools>=77" wheel \
    && "$py" -m pip install -q --disable-pip-version-check numpy "scipy-openblas32>=0.3.31" scipy "cython>=3" mpi4py mpich pytest matplotlib scikit-learn
  } > "$work/venv.log" 2>&1 || fail "making the second environment $work/venv" "$work/venv.log"
fi
# the environment's bin first: its mpicc and mpiexec are the MPI that its mpi4py uses
export PATH="$(dirname "$py"):$PATH"
"$py" -c "import numpy, Cython, mpi4py, pytest" > "$work/deps.log" 2>&1 \
  || fail "$py lacks numpy, Cython, mpi4py or pytest" "$work/deps.log"
mpicc=$(command -v mpicc || true)
[ -n "$mpicc" ] || fail "no mpicc next to $py or on PATH" /dev/null

# 2. LLNL XBraid
tar xzf "$tarball" -C "$work" || fail "extracting $tarball" /dev/null
make -C "$work/xbraid/braid" debug=no MPICC="$mpicc" > "$work/xbraid.log" 2>&1 \
  || fail "building LLNL XBraid" "$work/xbraid.log"

# 3. braidnet against it: a copy of the working tree, installed into the second environment
src=$work/braidnet
mkdir -p "$src"
git -C "$root" ls-files -z --cached --others --exclude-standard \
  | (cd "$root" && xargs -0 cp --parents -t "$src" 2> /dev/null || true)
[ -f "$src/setup.py" ] || fail "copying the checkout" /dev/null
XBRAID_DIR="$work/xbraid" "$py" -m pip install --disable-pip-version-check --no-build-isolation -e "$src" \
  > "$work/build.log" 2>&1 || fail "installing braidnet against LLNL XBraid" "$work/build.log"
(cd "$work" && "$py" -c "
import braidnet.braid as b, sys
assert b.__file__.startswith('$src/'), b.__file__
sys.exit(0 if not b.BUNDLED_CORE else 'braidnet.braid was built against the bundled core')
") > "$work/import.log" 2>&1 || fail "importing the LLNL build of braidnet.braid" "$work/import.log"

# 4. the test suite
if ! (cd "$src" && "$py" -m pytest -q -p no:cacheprovider "$@") > "$work/pytest.log" 2>&1; then
  fail "the test suite against LLNL XBraid" "$work/pytest.log"
fi
stray=$(cd "$src" && find . -name 'braid.out*' -o -name 'braid_timings*' | head -5)
[ -z "$stray" ] || { echo "$stray" > "$work/stray.log"; fail "the core wrote files: $stray" "$work/stray.log"; }

# 5. both cores side by side (BRAIDNET_COMPARE_CORES=1; the checkout built in place, as
#    scripts/test.sh leaves it, run with its own environment): the reference problems over an option matrix, whose table is
#    printed, and a 20-iteration peaks training run whose histories must agree to 1e-9
if [ "${BRAIDNET_COMPARE_CORES:-0}" = 1 ]; then
  "$bundled_py" scripts/compare_cores.py --bundled "$root" --llnl "$src" --llnl-python "$py" > "$work/compare.log" 2>&1 \
    || fail "comparing the cores (scripts/compare_cores.py)" "$work/compare.log"
  cat "$work/compare.log"
  for core in bundled llnl; do
    dir=$root core_py=$bundled_py
    [ "$core" = llnl ] && dir=$src core_py=$py
    (cd "$dir" && PYTHONPATH="$dir" OPENBLAS_NUM_THREADS=1 "$(dirname "$core_py")/mpiexec" -n 2 "$core_py" -m braidnet.cli \
      train examples/peaks_plain.toml --set optimizer.iterations=20 --out "$work/peaks_$core") \
      > "$work/peaks_$core.log" 2>&1 || fail "the 20-iteration peaks run on the $core core" "$work/peaks_$core.log"
  done
  "$py" - "$work/peaks_bundled/history.csv" "$work/peaks_llnl/history.csv" > "$work/peaks.log" 2>&1 <<'PY' \
    || fail "the peaks histories of the two cores differ" "$work/peaks.log"
import csv, sys
a, b = ([{k: v if k in ("version", "core") else float(v) for k, v in r.items()}
         for r in csv.DictReader(open(p))] for p in sys.argv[1:])
assert len(a) == len(b) == 21, (len(a), len(b))
assert {r["core"] for r in a} == {"bundled"} and all(r["core"].startswith("LLNL XBraid (") for r in b), \
    ({r["core"] for r in a}, {r["core"] for r in b})
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
