# Sourced by the quick-start and test scripts: use the active virtual environment, or make and
# activate .venv, then install braidnet's build and run dependencies and braidnet itself (in place).
# Build isolation is off so that the extension links the MPI library that stays installed (the
# mpich wheel's, or the system's with BRAIDNET_SYSTEM_MPI=1).
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -d .venv ] || { echo "== making the virtual environment .venv"; "${PYTHON:-python3}" -m venv .venv; }
  . .venv/bin/activate
fi
mpi_pkg=mpich
[ "${BRAIDNET_SYSTEM_MPI:-0}" = 1 ] && mpi_pkg=
echo "== installing the dependencies into $VIRTUAL_ENV (numpy, scipy-openblas32, scipy, Cython, mpi4py${mpi_pkg:+, MPICH}, pytest, matplotlib, scikit-learn)"
python -m pip install -q --disable-pip-version-check --upgrade pip "setuptools>=77" wheel
python -m pip install -q --disable-pip-version-check numpy "scipy-openblas32>=0.3.31" scipy "cython>=3" mpi4py $mpi_pkg pytest matplotlib scikit-learn
echo "== building braidnet (the C core and the Cython modules; a few minutes the first time)"
python -m pip install -q --disable-pip-version-check --no-build-isolation -e .
