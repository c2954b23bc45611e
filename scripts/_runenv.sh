# Sourced by the study scripts from the repository root: the repo's .venv unless a virtual
# environment is active, and one BLAS thread per MPI rank unless the caller says otherwise (with
# OpenBLAS's default of a thread per core, P ranks oversubscribe the cores and, at width 220, run
# ~5-10x slower; docs/results.md).  MPIEXEC and PYTHON default to mpiexec and python.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
  MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
MPIEXEC=${MPIEXEC:-mpiexec}
PYTHON=${PYTHON:-python}
