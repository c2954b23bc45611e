#!/usr/bin/env bash
# Nested against non-nested training over seeds and hyperparameters, one study per --study:
#   peaks   the paper's Figure 3 study (Cyr, Guenther, Schroder 2019; docs/design.md section 8): widths 5
#           and 8, initial residual weight scale w_i in {0, 1e-6}, Tikhonov gamma in {1e-5, 1e-7}, SEEDS
#           runs each, nested (examples/peaks.toml) and non-nested (examples/peaks_plain.toml), T = 5;
#   digits  convolutional ResNets on the UCI digits (docs/results.md section 5): width 4, w_i 0,
#           gamma 1e-7, nested (examples/digits.toml) and non-nested (examples/digits_plain.toml).
# Every run is one `mpiexec -n P python -m braidnet.cli train ...` into OUT/<method>_w<W>_wi<WI>_g<G>_s<S>/.
# scripts/scan_digits.sh is this script with --study digits.
set -u

usage() {
  cat <<'EOF'
usage: scripts/scan_peaks.sh [options] [-- EXTRA TRAIN ARGS]

Runs a scan of nested against non-nested training and leaves one braidnet run folder per network.

options:
  --study S       peaks (default: the paper's Figure 3 scan) or digits (convolutional ResNets on the
                  UCI digits, docs/results.md section 5); sets the configurations, the defaults below
                  and --quick's schedules
  -o OUT          output folder (default runs/scan_S, or runs/scan_S_quick with --quick)
  -s SEEDS        runs per (width, w_i, gamma, method): seeds 1..SEEDS (default 12, as the paper; digits 10),
                  or A-B for seeds A..B (more independent starts, or a scan split over machines)
  -j J            runs at a time (default 1)
  -p P            MPI ranks per run (default 2); J*P should not exceed the cores
  --seed-mode M   what a seed varies (default net):
                    net   network.seed = s, data.seed = 0: one data set, 12 initialisations
                          (the paper trained on one published peaks data set)
                    both  network.seed = data.seed = s: data draw and initialisation vary
  --widths "5 8"  widths to scan (default "5 8"; digits "4", its channels)
  --methods "nested plain"   methods to scan (default both; plain = non-nested)
  --wis "0 1e-6"  initial residual weight scales w_i to scan (default "0 1e-6", as the paper; digits "0")
  --gammas "1e-5 1e-7"       Tikhonov weights gamma to scan (default "1e-5 1e-7", as the paper; digits "1e-7")
  --quick         shortened schedules for a smoke run: peaks nested [20,12,8], non-nested 19 iterations
                  (a tenth); digits nested [10,7,3], non-nested 20 iterations (a third)
  --retry-failed  also rerun runs that diverged before (by default a diverged run, exit status 3,
                  is a result and is skipped; any other failure is retried by the next scan)
  --dry-run       print the commands, run nothing
  -h, --help      this text

Anything after -- is passed on to every `braidnet train` (e.g. -- --set braid.iterations=3).
The digits study validates every iteration (output.validate_every=1, as peaks.toml) for its curves.

Resumable: a run whose folder holds weights.npz is finished and skipped; one holding only
checkpoint.npz is continued with --resume.  A failing run is written to OUT/failures.log (and its
exit status to OUT/<run>/FAILED) and the scan goes on.  OUT/timings.tsv gets one line per run (wall seconds),
OUT/scan.manifest lists every planned run (scripts/summarize_scan.py reports the missing ones).
Environment: MPIEXEC (default mpiexec), PYTHON (default python; the repo's .venv is activated if
no virtual environment is), OPENBLAS_NUM_THREADS / OMP_NUM_THREADS (default 1 per rank).
EOF
}

# ---- defaults and arguments ---------------------------------------------------------------------
PROG=$(basename "$0")
STUDY=peaks
OUT=""
SEEDS=""
JOBS=1
RANKS=2
SEED_MODE=net
WIDTHS=""
METHODS="nested plain"
QUICK=0
RETRY=0
DRY=0
EXTRA=()
WIS=()              # initial weight scale w_i of the residual layers (default: the study's)
GAMMAS=()           # Tikhonov weight gamma_tik (default: the study's)

die() { echo "$PROG: $*" >&2; exit 2; }

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "option $1 needs a value (see -h)"; }

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

while [ $# -gt 0 ]; do
  case "$1" in
    --study) need_value "$@"; STUDY=$2; shift 2 ;;
    -o) need_value "$@"; OUT=$2; shift 2 ;;
    -s) need_value "$@"; SEEDS=$2; shift 2 ;;
    -j) need_value "$@"; JOBS=$2; shift 2 ;;
    -p) need_value "$@"; RANKS=$2; shift 2 ;;
    --seed-mode) need_value "$@"; SEED_MODE=$2; shift 2 ;;
    --widths) need_value "$@"; WIDTHS=$2; shift 2 ;;
    --methods) need_value "$@"; METHODS=$2; shift 2 ;;
    --wis) need_value "$@"; read -r -a WIS <<< "$2"; shift 2 ;;
    --gammas) need_value "$@"; read -r -a GAMMAS <<< "$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --retry-failed) RETRY=1; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# ---- the studies: configurations, defaults, --quick's schedules, fixed overrides -----------------
case "$STUDY" in
  peaks)
    NESTED_CFG=examples/peaks.toml; PLAIN_CFG=examples/peaks_plain.toml
    DEF_SEEDS=12; DEF_WIDTHS="5 8"; DEF_WIS="0 1e-6"; DEF_GAMMAS="1e-5 1e-7"
    # a tenth of the paper's iterations, same nested/non-nested ratio (400 vs 188)
    QUICK_NESTED="[20,12,8]"; QUICK_PLAIN=19
    FIXED=() ;;
  digits)
    NESTED_CFG=examples/digits.toml; PLAIN_CFG=examples/digits_plain.toml
    DEF_SEEDS=10; DEF_WIDTHS="4"; DEF_WIS="0"; DEF_GAMMAS="1e-7"
    # a third of the examples' iterations ((30, 20, 10) and 60)
    QUICK_NESTED="[10,7,3]"; QUICK_PLAIN=20
    FIXED=(output.validate_every=1) ;;
  *) die "--study must be peaks or digits, got '$STUDY'" ;;
esac
[ -n "$SEEDS" ] || SEEDS=$DEF_SEEDS
[ -n "$WIDTHS" ] || WIDTHS=$DEF_WIDTHS
[ ${#WIS[@]} -gt 0 ] || read -r -a WIS <<< "$DEF_WIS"
[ ${#GAMMAS[@]} -gt 0 ] || read -r -a GAMMAS <<< "$DEF_GAMMAS"

if [[ "$SEEDS" =~ ^([1-9][0-9]*)-([1-9][0-9]*)$ ]] && [ "${BASH_REMATCH[1]}" -le "${BASH_REMATCH[2]}" ]; then
  FIRST_SEED=${BASH_REMATCH[1]}; LAST_SEED=${BASH_REMATCH[2]}
elif is_count "$SEEDS"; then
  FIRST_SEED=1; LAST_SEED=$SEEDS
else
  die "-s needs a positive integer N (seeds 1..N) or a range A-B with A <= B, got '$SEEDS'"
fi
for v in "${WIS[@]}" "${GAMMAS[@]}"; do
  [[ "$v" =~ ^[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$ ]] || die "--wis/--gammas: '$v' is not a non-negative number"
done
is_count "$JOBS" || die "-j needs a positive integer, got '$JOBS'"
is_count "$RANKS" || die "-p needs a positive integer, got '$RANKS'"
case "$SEED_MODE" in net|both) ;; *) die "--seed-mode must be net or both, got '$SEED_MODE'" ;; esac
for w in $WIDTHS; do is_count "$w" || die "--widths: '$w' is not a positive integer"; done
for m in $METHODS; do case "$m" in nested|plain) ;; *) die "--methods: '$m' is not nested or plain" ;; esac; done

cd "$(dirname "$0")/.." || die "cannot cd to the repository root"
. scripts/_runenv.sh
[ -n "$OUT" ] || { [ "$QUICK" = 1 ] && OUT=runs/scan_${STUDY}_quick || OUT=runs/scan_$STUDY; }

# ---- one run ---------------------------------------------------------------------------------------

config_of() { [ "$1" = nested ] && echo "$NESTED_CFG" || echo "$PLAIN_CFG"; }

# The --set overrides of one run (one per line): the scanned values, the study's fixed ones, then
# --quick's schedule.
overrides_of() {  # method width wi gamma seed
  local method=$1 width=$2 wi=$3 gamma=$4 seed=$5
  echo "network.width=$width"
  echo "network.init_layers=$wi"
  echo "network.gamma_tik=$gamma"
  echo "network.seed=$seed"
  if [ "$SEED_MODE" = both ]; then echo "data.seed=$seed"; else echo "data.seed=0"; fi
  [ ${#FIXED[@]} -eq 0 ] || printf '%s\n' "${FIXED[@]}"
  if [ "$QUICK" = 1 ]; then
    if [ "$method" = nested ]; then echo "nested.schedule=$QUICK_NESTED"; else echo "optimizer.iterations=$QUICK_PLAIN"; fi
  fi
}

log_failure() {  # name rc seconds dir cmd...
  local name=$1 rc=$2 secs=$3 dir=$4; shift 4
  local why="exit status $rc"
  [ "$rc" = 3 ] && why="training diverged (exit status 3)"
  [ "$rc" = 2 ] && why="configuration error (exit status 2)"
  echo "$rc" > "$dir/FAILED"
  # one printf = one write, so that concurrent runs don't interleave their records
  printf '%s  %s: %s after %ss\n  command: %s\n  log tail (%s/train.log):\n%s\n\n' \
    "$(date '+%F %T')" "$name" "$why" "$secs" "$*" "$dir" \
    "$(tail -n 8 "$dir/train.log" 2>/dev/null | sed 's/^/    /')" >> "$OUT/failures.log"
}

run_one() {  # method width wi gamma seed
  local method=$1 width=$2 wi=$3 gamma=$4 seed=$5
  local name="${method}_w${width}_wi${wi}_g${gamma}_s${seed}"
  local dir="$OUT/$name"
  if [ -f "$dir/weights.npz" ]; then echo "[skip]   $name (finished)"; return 0; fi
  # a diverged run (exit 3) is an outcome of its hyperparameters: don't repeat it; other failures
  # (crash, configuration, killed) are retried by the next scan
  if [ "$(cat "$dir/FAILED" 2>/dev/null)" = 3 ] && [ "$RETRY" = 0 ]; then
    echo "[skip]   $name (diverged before: see $OUT/failures.log; --retry-failed to rerun)"; return 0
  fi
  local cmd=("$MPIEXEC" -n "$RANKS" "$PYTHON" -m braidnet.cli train "$(config_of "$method")" --out "$dir")
  local o
  while IFS= read -r o; do cmd+=(--set "$o"); done < <(overrides_of "$method" "$width" "$wi" "$gamma" "$seed")
  local what=start
  # a run that died before its first checkpoint starts over (its folder holds its first rows)
  if [ -f "$dir/checkpoint.npz" ]; then cmd+=(--resume); what=resume
  elif [ -f "$dir/config.json" ]; then cmd+=(--overwrite); what=restart; fi
  cmd+=("${EXTRA[@]}")
  if [ "$DRY" = 1 ]; then printf '%q ' "${cmd[@]}"; echo; return 0; fi

  mkdir -p "$dir" && rm -f "$dir/FAILED"
  printf "%-9s%s\n" "[$what]" "$name"
  local t0=$SECONDS rc
  # a resumed run appends to the log of the interrupted one
  { printf '### %s: ' "$(date '+%F %T')"; printf '%q ' "${cmd[@]}"; echo; } >> "$dir/train.log"
  "${cmd[@]}" >> "$dir/train.log" 2>&1 < /dev/null
  rc=$?
  local secs=$((SECONDS - t0)) acc="-"
  if [ "$rc" = 0 ] && [ -f "$dir/weights.npz" ]; then
    acc=$(sed -n 's/^done: .*final validation accuracy \([0-9.]*\)%.*/\1/p' "$dir/train.log" | tail -n 1)
    echo "[done]   $name: ${acc:-?}% in ${secs}s"
  else
    [ "$rc" = 0 ] && rc=99   # exited cleanly but wrote no weights
    log_failure "$name" "$rc" "$secs" "$dir" "${cmd[*]}"
    echo "[FAILED] $name: exit status $rc after ${secs}s (see $OUT/failures.log)"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$what" "$rc" "$secs" "$RANKS" "${acc:--}" \
    "$(date '+%F %T')" >> "$OUT/timings.tsv"
  return 0
}

# ---- the scan ----------------------------------------------------------------------------------------

# Every (method width wi gamma seed), one per line.  The seed varies slowest: a scan stopped early
# still covers every (width, w_i, gamma, method) cell, with fewer seeds.
plan() {
  local seed width method wi gamma
  for seed in $(seq "$FIRST_SEED" "$LAST_SEED"); do
    for width in $WIDTHS; do
      for wi in "${WIS[@]}"; do
        for gamma in "${GAMMAS[@]}"; do
          for method in $METHODS; do echo "$method $width $wi $gamma $seed"; done
        done
      done
    done
  done
}

PIDS=()
stop_all() {  # Ctrl-C / kill: end the runs this script started (their checkpoints let them resume)
  trap - INT TERM
  echo "$PROG: interrupted; stopping ${#PIDS[@]} run(s); rerun the same command to resume" >&2
  local pid
  # background jobs of a script ignore SIGINT, so signal each run's mpiexec (a child of its job)
  for pid in "${PIDS[@]}"; do pkill -TERM -P "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null; done
  wait
  exit 130
}

main() {
  local cfg
  for cfg in $(for m in $METHODS; do config_of "$m"; done); do
    [ -f "$cfg" ] || die "missing configuration $cfg"
  done
  local runs
  runs=$(plan)
  local total
  total=$(printf '%s\n' "$runs" | wc -l)
  if [ "$DRY" = 0 ]; then
    mkdir -p "$OUT" || die "cannot create $OUT"
    [ -f "$OUT/timings.tsv" ] || printf 'run\tmode\trc\tseconds\tranks\tval_accuracy\tfinished\n' > "$OUT/timings.tsv"
    # the manifest: every run ever planned into OUT (summarize_scan.py reports those without result)
    { [ -f "$OUT/scan.manifest" ] && cat "$OUT/scan.manifest"
      printf '%s\n' "$runs" | while read -r m w wi g s; do echo "${m}_w${w}_wi${wi}_g${g}_s${s}"; done
    } | sort -u > "$OUT/scan.manifest.tmp" && mv "$OUT/scan.manifest.tmp" "$OUT/scan.manifest"
    echo "$PROG: $total runs into $OUT, $JOBS at a time on $RANKS ranks each" \
      "(study $STUDY, seed mode $SEED_MODE$([ "$QUICK" = 1 ] && echo ', quick'))"
  fi
  trap stop_all INT TERM
  local t0=$SECONDS line
  while read -r line; do
    # shellcheck disable=SC2086  # line is five words by construction
    if [ "$DRY" = 1 ]; then run_one $line; continue; fi
    # job slots: wait for one of the J running runs to end before starting another
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    # shellcheck disable=SC2086  # line is five words by construction
    run_one $line &
    PIDS+=($!)
  done <<< "$runs"
  wait
  [ "$DRY" = 1 ] && return 0
  local nfail f
  nfail=0
  for f in "$OUT"/*/FAILED; do [ -f "$f" ] && nfail=$((nfail + 1)); done
  local note=""
  [ "$nfail" -gt 0 ] && note=" (see $OUT/failures.log)"
  echo "$PROG: done in $((SECONDS - t0))s; $nfail run(s) without a result$note"
  echo "summary: python scripts/summarize_scan.py $OUT"
}

main
