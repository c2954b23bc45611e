#!/usr/bin/env bash
# The paper's Figure 5 (Cyr, Guenther, Schroder 2019; docs/design.md section 8): Indian Pines, width 220,
# 128 residual layers at the finest level, T = 5; nested iteration with the schedules (200, 100, 50)
# and (200, 200, 200) on 32/64/128 layers against non-nested training of the 128-layer network.
set -u

usage() {
  cat <<'EOF'
usage: scripts/run_indian_pines.sh [options] [-- EXTRA TRAIN ARGS]

Trains the three networks of the paper's Figure 5 one after the other, then draws them against work
units (OUT/figure5.png, `braidnet plot`) and compares each nested run with the non-nested one
(OUT/compare.txt, `braidnet compare`).

options:
  -o OUT        output folder (default runs/indian_pines, runs/indian_pines_quick with --quick)
  -p P          MPI ranks per run (default 2; the paper used 32)
  --runs LIST   which runs, of "nested_200_100_50 nested_200_200_200 plain" (default all three)
  --plain-iterations N   iterations of the non-nested run (default: examples/indian_pines_plain.toml's,
                150 ~ the work of (200,100,50); ~350 reaches the work of (200,200,200))
  --quick       a tenth of the iterations (schedules /10, non-nested 1/10) for a smoke run
  --dry-run     print the commands, run nothing
  -h, --help    this text

Anything after -- goes to every `braidnet train` (e.g. -- --set data.seed=3).
Needs the optional dependency tensorly (its copy of the Indian Pines cube, 200 bands):
`pip install tensorly` (or `pip install -e .[data]`).  Finished runs (weights.npz) are skipped,
interrupted ones resumed (checkpoint.npz); failures go to OUT/failures.log.
Environment: MPIEXEC (default mpiexec), PYTHON (default python; the repo's .venv is activated if no
virtual environment is), OPENBLAS_NUM_THREADS / OMP_NUM_THREADS (default 1 per rank).
EOF
}

OUT=""
RANKS=2
RUNS="nested_200_100_50 nested_200_200_200 plain"
PLAIN_ITERS=""
QUICK=0
DRY=0
EXTRA=()

die() { echo "run_indian_pines.sh: $*" >&2; exit 2; }
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "option $1 needs a value (see -h)"; }

while [ $# -gt 0 ]; do
  case "$1" in
    -o) need_value "$@"; OUT=$2; shift 2 ;;
    -p) need_value "$@"; RANKS=$2; shift 2 ;;
    --runs) need_value "$@"; RUNS=$2; shift 2 ;;
    --plain-iterations) need_value "$@"; PLAIN_ITERS=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[[ "$RANKS" =~ ^[1-9][0-9]*$ ]] || die "-p needs a positive integer, got '$RANKS'"
[ -z "$PLAIN_ITERS" ] || [[ "$PLAIN_ITERS" =~ ^[1-9][0-9]*$ ]] || die "--plain-iterations needs a positive integer"

cd "$(dirname "$0")/.." || die "cannot cd to the repository root"
. scripts/_runenv.sh
[ -n "$OUT" ] || { [ "$QUICK" = 1 ] && OUT=runs/indian_pines_quick || OUT=runs/indian_pines; }
NESTED_CFG=examples/indian_pines.toml
PLAIN_CFG=examples/indian_pines_plain.toml

# The configuration file and --set overrides of one run, one word per line.
args_of() {
  local run=$1
  case "$run" in
    nested_*)
      local sched=${run#nested_}
      sched=${sched//_/,}
      # --quick: every level gets a tenth of its iterations
      if [ "$QUICK" = 1 ]; then
        local m short=()
        for m in ${sched//,/ }; do short+=($(( m / 10 > 0 ? m / 10 : 1 ))); done
        sched=$(IFS=,; echo "${short[*]}")
      fi
      printf '%s\n' "$NESTED_CFG" --set "nested.schedule=[$sched]" ;;
    plain)
      printf '%s\n' "$PLAIN_CFG"
      local it=$PLAIN_ITERS
      if [ -z "$it" ] && [ "$QUICK" = 1 ]; then
        it=$("$PYTHON" - "$PLAIN_CFG" <<'PY'
import sys
from braidnet import config
print(config.load_config(sys.argv[1], [])["optimizer"]["iterations"])
PY
        ) || die "cannot read optimizer.iterations of $PLAIN_CFG"
      fi
      # --quick: a tenth of the iterations
      [ "$QUICK" = 1 ] && it=$(( it / 10 > 0 ? it / 10 : 1 ))
      [ -z "$it" ] || printf '%s\n' --set "optimizer.iterations=$it" ;;
    *) die "unknown run '$run' (see --runs in -h)" ;;
  esac
}

run_one() {
  local run=$1 dir="$OUT/$1"
  if [ -f "$dir/weights.npz" ]; then echo "[skip]   $run (finished)"; return 0; fi
  local cmd=("$MPIEXEC" -n "$RANKS" "$PYTHON" -m braidnet.cli train) a
  while IFS= read -r a; do cmd+=("$a"); done < <(args_of "$run")
  cmd+=(--out "$dir")
  local what=start
  # a run that died before its first checkpoint starts over (its folder holds its first rows)
  if [ -f "$dir/checkpoint.npz" ]; then cmd+=(--resume); what=resume
  elif [ -f "$dir/config.json" ]; then cmd+=(--overwrite); what=restart; fi
  cmd+=("${EXTRA[@]}")
  if [ "$DRY" = 1 ]; then printf '%q ' "${cmd[@]}"; echo; return 0; fi
  mkdir -p "$dir"
  echo "[$what]  $run"
  { printf '### %s: ' "$(date '+%F %T')"; printf '%q ' "${cmd[@]}"; echo; } >> "$dir/train.log"
  local t0=$SECONDS rc
  "${cmd[@]}" >> "$dir/train.log" 2>&1 < /dev/null
  rc=$?
  local secs=$((SECONDS - t0))
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$what" "$rc" "$secs" "$RANKS" "$(date '+%F %T')" >> "$OUT/timings.tsv"
  if [ "$rc" = 0 ] && [ -f "$dir/weights.npz" ]; then
    echo "[done]   $run in ${secs}s: $(grep '^done:' "$dir/train.log" | tail -n 1)"
  else
    printf '%s  %s: exit status %s after %ss\n  command: %s\n%s\n\n' "$(date '+%F %T')" "$run" "$rc" "$secs" \
      "${cmd[*]}" "$(tail -n 8 "$dir/train.log" | sed 's/^/    /')" >> "$OUT/failures.log"
    echo "[FAILED] $run: exit status $rc after ${secs}s (see $OUT/failures.log)"
  fi
}

check_requirements() {
  local cfg
  for cfg in "$NESTED_CFG" "$PLAIN_CFG"; do [ -f "$cfg" ] || die "missing configuration $cfg"; done
  local msg="Indian Pines needs the optional dependency tensorly: pip install tensorly (or pip install -e .[data])"
  if ! "$PYTHON" -c 'import tensorly' 2>/dev/null; then
    [ "$DRY" = 1 ] && echo "run_indian_pines.sh: warning: $msg" >&2 || die "$msg"
  fi
}

# Figure 5 and the comparisons, from whatever finished.
report() {
  local done=() run
  for run in $RUNS; do [ -f "$OUT/$run/weights.npz" ] && done+=("$OUT/$run"); done
  [ "${#done[@]}" -gt 0 ] || { echo "run_indian_pines.sh: no finished run to plot" >&2; return 1; }
  "$PYTHON" -m braidnet.cli plot "${done[@]}" --out "$OUT/figure5.png" > /dev/null && echo "figure: $OUT/figure5.png"
  : > "$OUT/compare.txt"
  if [ -f "$OUT/plain/weights.npz" ]; then
    for run in $RUNS; do
      [ "$run" != plain ] && [ -f "$OUT/$run/weights.npz" ] || continue
      { echo "## $run vs plain"; "$PYTHON" -m braidnet.cli compare "$OUT/$run" "$OUT/plain"; echo; } >> "$OUT/compare.txt"
    done
    cat "$OUT/compare.txt"
  fi
}

main() {
  check_requirements
  local run
  [ "$DRY" = 1 ] || { mkdir -p "$OUT" || die "cannot create $OUT"; }
  [ "$DRY" = 1 ] || [ -f "$OUT/timings.tsv" ] || printf 'run\tmode\trc\tseconds\tranks\tfinished\n' > "$OUT/timings.tsv"
  for run in $RUNS; do run_one "$run"; done
  [ "$DRY" = 1 ] || report
}

main
