#!/usr/bin/env bash
# Install everything (see scripts/_venv.sh) and run the whole test suite: the C core's own tests under
# AddressSanitizer, the ResNet kernels' stand-alone C test (scripts/check_kernels.sh), then pytest
# (which launches mpiexec with 1-4 ranks where a test needs them).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
bash scripts/check_leaks.sh 1
bash scripts/check_kernels.sh
python -m pytest -q "$@"
