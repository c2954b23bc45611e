#!/usr/bin/env bash
# Quick start: nested-iteration and plain layer-parallel training of the peaks classifier on 2 MPI
# ranks, then their comparison in work units and a plot (accuracy and loss against work units).
#
#   scripts/quickstart.sh           shortened schedules: nested (80, 50, 30) (0.4 x the paper's) vs
#                                   88 plain iterations, what the nested run costs in counted work
#                                   units; a few minutes on 2 cores
#   scripts/quickstart.sh --full    the paper's schedules: examples/peaks.toml (200, 125, 75) vs
#                                   examples/peaks_plain.toml (188 iterations)
#
# Installs everything first (scripts/_venv.sh: the active virtual environment, or .venv).  A rerun
# replaces the quick start's earlier runs (--overwrite).
# Environment: BRAIDNET_OUT (output folder, default runs/quickstart), NP (ranks, default 2),
# MPIEXEC (launcher, default mpiexec).
set -euo pipefail
cd "$(dirname "$0")/.."
full=0
for arg in "$@"; do
  case "$arg" in
    --full) full=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "quickstart.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done
. scripts/_venv.sh

out=${BRAIDNET_OUT:-runs/quickstart}
np=${NP:-2}
mpiexec=${MPIEXEC:-mpiexec}
if [ "$full" = 1 ]; then
  nested=(examples/peaks.toml)
  plain=(examples/peaks_plain.toml)
else
  nested=(examples/peaks.toml --set 'nested.schedule=[80, 50, 30]')
  plain=(examples/peaks_plain.toml --set optimizer.iterations=88)
fi

echo "== nested iteration (16, 32, 64 layers) on $np ranks -> $out/nested"
"$mpiexec" -n "$np" python -m braidnet.cli train "${nested[@]}" --out "$out/nested" --overwrite
echo "== plain training (64 layers) on $np ranks -> $out/plain"
"$mpiexec" -n "$np" python -m braidnet.cli train "${plain[@]}" --out "$out/plain" --overwrite

echo "== comparison"
python -m braidnet.cli compare "$out/nested" "$out/plain"
png=$(python -m braidnet.cli plot "$out/nested" "$out/plain" --out "$out/peaks.png")
echo "plot: $png"
echo
echo "Next: activate the environment to use braidnet yourself, e.g."
echo "  . ${VIRTUAL_ENV#$PWD/}/bin/activate"
echo "  mpiexec -n $np braidnet train examples/peaks.toml --out runs/mine    # the paper's schedule"
echo "  braidnet config                                                   # every key and its meaning"
