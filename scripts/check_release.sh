#!/usr/bin/env bash
# Release check: what a user who installs a release gets.  From this checkout:
#
#   1. `python -m build`: the sdist, then the wheel built from that sdist (build isolation: the wheel
#      links the build environment's MPICH and finds the mpich installed beside it at run time);
#      checks what each holds (the sdist: the core and every Cython source; the wheel: the four
#      compiled extensions and the stubs, no build-only sources).
#   2. a fresh virtual environment, OUTSIDE the source tree: `pip install WHEEL[mpich]`, then the smoke
#      test: import every module of the installed package (each expected extension among them),
#      `braidnet --version`, build_info(), one MPI library in the process, the README's ODE example
#      (`Decay`) under `mpiexec -n 2`, and 3 iterations of `braidnet train` on the sdist's
#      examples/peaks_plain.toml under `mpiexec -n 2`.
#   3. a second fresh environment holding numpy, scipy-openblas32, Cython, mpi4py and mpich: `pip install
#      --no-build-isolation` of a copy of the sdist without xbraid/relax.c must fail, naming the file,
#      and install nothing; then `pip install --no-build-isolation SDIST` and the same smoke test.
#
# Quiet on success (progress lines; the log is removed), loud on failure (the failing step, the end of
# its log, the kept work folder).  Needs python3 (PYTHON=...) with venv, a C compiler, and PyPI.
# A few minutes: two full builds on 2 cores.  KEEP=1 keeps the work folder.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/braidnet-release.XXXXXX")
log=$work/log.txt
: >"$log"
start=$SECONDS
ok=0

finish() {
  if [ "$ok" = 1 ]; then
    if [ "${KEEP:-0}" = 1 ]; then echo "== work folder kept: $work"; else rm -rf "$work"; fi
  else
    echo "check_release.sh: FAILED (the end of the log follows; everything is in $work)" >&2
    tail -n 60 "$log" >&2 || true
  fi
}
trap finish EXIT

step() { echo "== $* ($((SECONDS - start)) s)"; echo "== $*" >>"$log"; }
fail() { echo "check_release.sh: $*" >&2; exit 1; }
# run CMD...: its output goes to the log; a failure stops the check
run() { echo "+ $*" >>"$log"; "$@" >>"$log" 2>&1 || fail "failed: $*"; }
pipq() { run "$1/bin/python" -m pip install -q --disable-pip-version-check "${@:2}"; }
newvenv() { run "$python" -m venv "$1"; pipq "$1" --upgrade pip; }

# The smoke test, run from an empty folder with the environment's python under mpiexec -n 2.
cat >"$work/smoke.py" <<'EOF'
import ast
import importlib
import importlib.metadata
import os
import pkgutil
import sys

import braidnet

setup_py, src = sys.argv[1], sys.argv[2]
assert not os.path.realpath(braidnet.__file__).startswith(src + os.sep), \
    f"imported braidnet from the source tree ({braidnet.__file__}), not the installed package"

# every module of the installed package, the extensions setup.py lists among them
found = sorted(m.name for m in pkgutil.iter_modules(braidnet.__path__))
for node in ast.parse(open(setup_py).read()).body:
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "EXTENSIONS":
        expected = ast.literal_eval(node.value)
lost = sorted(set(expected) - set(found))
assert not lost, f"extension modules not installed: {lost} (installed modules: {found})"
for name in found:
    importlib.import_module(f"braidnet.{name}")

from braidnet.braid import BUNDLED_CORE

info = braidnet.build_info()
assert info["version"] == braidnet.__version__ == importlib.metadata.version("braidnet"), info
assert info["core"] == "bundled" and BUNDLED_CORE and info["xbraid_dir"] is None, info

# mpi4py and braidnet share one MPI library
with open("/proc/self/maps") as f:
    libmpi = {os.path.realpath(line.split()[-1]) for line in f if "/libmpi.so" in line}
assert len(libmpi) == 1, f"MPI libraries in this process: {sorted(libmpi)}"

# README.md, "Solving an ODE from Python"
import numpy as np
from mpi4py import MPI
from braidnet.braid import Core

class Decay:                                   # u' = -u, backward Euler
    def init(self, t):
        return np.array([1.0 if t == 0 else 0.456])
    def step(self, u, ustop, fstop, status):    # in place; the core adds the FAS right-hand side itself
        u /= 1.0 + (status.tstop - status.tstart)

core = Core(Decay(), 0.0, 32.0, 64, comm=MPI.COMM_WORLD, max_levels=3, cfactor=2, abs_tol=1e-10)
result = core.drive()                          # iterations, residual_norms, levels, time
# end of the README's example
assert MPI.COMM_WORLD.Get_size() == 2
assert result.residual_norms[-1] < 1e-10 and 1 < result.iterations < 30, \
    (result.iterations, result.residual_norms)
if MPI.COMM_WORLD.Get_rank() == 0:
    print(f"smoke: {len(found)} modules, core {info['core']}, {sorted(libmpi)[0]}, "
          f"Decay: {result.iterations} iterations to {result.residual_norms[-1]:.1e}")
EOF

# smoke VENV NAME: the smoke test and a short training run with VENV's installation
smoke() {
  local venv=$1 name=$2 here=$work/$2
  mkdir -p "$here"
  (
    cd "$here"
    unset PYTHONPATH
    export PATH="$venv/bin:$PATH"
    version=$(braidnet --version 2>>"$log") || fail "$name: braidnet --version failed"
    echo "$version" >>"$log"
    case "$version" in
      "braidnet $ver (core: bundled)") ;;
      *) fail "$name: braidnet --version printed '$version', expected 'braidnet $ver (core: bundled)'" ;;
    esac
    run mpiexec -n 2 "$venv/bin/python" "$work/smoke.py" "$sdist_dir/setup.py" "$src"
    run mpiexec -n 2 braidnet train "$sdist_dir/examples/peaks_plain.toml" \
        --set optimizer.iterations=3 --out "$here/run"
    [ -n "$(ls -A "$here/run")" ] || fail "$name: the training run wrote nothing to $here/run"
  )
}

ver=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$src/braidnet/__init__.py")
[ -n "$ver" ] || fail "no __version__ = \"...\" line in braidnet/__init__.py"
echo "== braidnet $ver: release check of $src (log: $log)"

step "building the sdist and the wheel from it (python -m build; a few minutes)"
newvenv "$work/tools"
pipq "$work/tools" build
run "$work/tools/bin/python" -m build --outdir "$work/dist" "$src"
sdist=$work/dist/braidnet-$ver.tar.gz
wheels=("$work"/dist/braidnet-"$ver"-*.whl)
[ -f "$sdist" ] && [ -f "${wheels[0]}" ] || fail "python -m build made no braidnet-$ver sdist and wheel in $work/dist"
wheel=${wheels[0]}
run tar -xzf "$sdist" -C "$work"
sdist_dir=$work/braidnet-$ver
run "$work/tools/bin/python" - "$sdist" "$wheel" <<'EOF'
import sys, tarfile, zipfile
sdist, wheel = sys.argv[1:]
names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
need = ["xbraid/relax.c", "xbraid/braid.h", "xbraid/tests/test_core.c", "braidnet/braid.pyx",
        "braidnet/libbraid.pxd", "braidnet/_braid/core.pxi", "braidnet/kernels/bn_kernels.c",
        "braidnet/py.typed", "LICENSE", "README.md", "examples/peaks_plain.toml", "tests/test_release.py"]
lost = [n for n in need if n not in names]
assert not lost, f"the sdist lacks {lost}"
stray = sorted(n for n in names if n.endswith((".so", ".o")) or n in ("braidnet/braid.c", "braidnet/_build.py"))
assert not stray, f"the sdist holds build products: {stray}"
names = set(zipfile.ZipFile(wheel).namelist())
ext = [n for n in names if n.startswith("braidnet/") and n.endswith(".so")]
assert len(ext) == 5, f"the wheel holds {len(ext)} extensions: {ext}"
for n in ["braidnet/_build.py", "braidnet/py.typed", "braidnet/braid.pyi", "braidnet/braid.pxd"]:
    assert n in names, f"the wheel lacks {n}"
build_only = sorted(n for n in names if n.endswith((".pyx", ".pxi", ".c", ".h")))
assert not build_only, f"the wheel holds build-only sources: {build_only}"
print(f"sdist and wheel contents ok ({len(names)} files in the wheel)")
EOF

step "wheel: installing $(basename "$wheel") into a fresh environment"
newvenv "$work/venv-wheel"
pipq "$work/venv-wheel" "$wheel[mpich]"
step "wheel: smoke test and 3 training iterations on 2 ranks"
smoke "$work/venv-wheel" smoke-wheel

step "sdist: a fresh environment with the build requirements (numpy, scipy-openblas32, Cython, mpi4py, mpich)"
venv=$work/venv-sdist
newvenv "$venv"
pipq "$venv" "setuptools>=77" wheel numpy "scipy-openblas32>=0.3.31" "cython>=3" mpi4py mpich

step "sdist without xbraid/relax.c: pip install must fail and name it"
mkdir -p "$work/broken"
run cp -R "$sdist_dir" "$work/broken/"
rm "$work/broken/braidnet-$ver/xbraid/relax.c"
run tar -czf "$work/broken/braidnet-$ver.tar.gz" -C "$work/broken" "braidnet-$ver"
if "$venv/bin/python" -m pip install --disable-pip-version-check --no-build-isolation \
    "$work/broken/braidnet-$ver.tar.gz" >"$work/broken.txt" 2>&1; then
  cat "$work/broken.txt" >>"$log"
  fail "pip install of an sdist without xbraid/relax.c succeeded"
fi
cat "$work/broken.txt" >>"$log"
grep -q "missing: xbraid/relax.c" "$work/broken.txt" || fail "the failed install of the broken sdist does not say 'missing: xbraid/relax.c'"
if "$venv/bin/python" -m pip show braidnet >/dev/null 2>&1; then fail "the broken sdist left braidnet installed"; fi
grep -m1 "missing: xbraid/relax.c" "$work/broken.txt" | sed 's/^[ |│]*/   pip said: /'

step "sdist: pip install --no-build-isolation $(basename "$sdist") (a few minutes)"
pipq "$venv" --no-build-isolation "$sdist"
step "sdist: smoke test and 3 training iterations on 2 ranks"
smoke "$venv" smoke-sdist

ok=1
echo "== release check passed: sdist and wheel of braidnet $ver install and run ($((SECONDS - start)) s)"
