#!/usr/bin/env bash
# scripts/bench-history.sh — the run store after years of use: 100 000
# recorded runs of 4 plans (scripts/fillstore, through the store's own API,
# each run with 3 step attempts, an artifact record and a log file).
#   - planrun runs, show, status and metrics: median wall time of 7 runs
#     each, the whole process (target < 50 ms each); `planrun version` is
#     the process start-up cost they all include; then the store's queries
#     alone, in process (engine/store BenchmarkHistoryQueries);
#   - planrun history prune of 90 000 of them (their attempts and log files
#     too, then VACUUM), once.
# BENCH_HISTORY_RUNS changes the 100 000; BENCH_DIR the scratch directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
n=${BENCH_HISTORY_RUNS:-100000}
dir=${BENCH_DIR:-/var/tmp/planrun-bench}/history
bin=${PLANRUN_BIN:-$PWD/bin/planrun}
[ -x "$bin" ] || go build -trimpath -o "$bin" ./cmd/planrun

rm -rf "$dir" && mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
start=$(date +%s%N)
go run ./scripts/fillstore -db "$dir/full.db" -runs "$n" -plans 4 -logs "$dir/full/logs"
fill_ms=$((($(date +%s%N) - start) / 1000000))

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# timed REPS CMD...: median wall milliseconds of REPS runs, output discarded
# (each command runs once before, where a failure stops the benchmark).
timed() {
  local reps=$1 i t0; shift
  for i in $(seq "$reps"); do
    t0=$(date +%s%N)
    "$@" >/dev/null
    echo $((($(date +%s%N) - t0) / 1000))
  done | median | awk '{printf "%.1f", $1 / 1000}'
}

db=$dir/full.db
printf '== run store with %d runs (filled in %.1f s, %s)\n' "$n" "$(echo "$fill_ms / 1000" | bc -l)" "$(du -h "$db" | cut -f1)"
printf '%-52s %10s\n' "measure" "median"
printf '%-52s %7s ms  (included in every row below)\n' "planrun version (process start-up)" "$(timed 7 "$bin" version)"
mid=$(printf '%08x' $((n / 2)))   # an id prefix from the middle of the history
for c in "runs" "runs --plan plan-1" "show $mid" "show latest --plan plan-2" \
         "status plan-1 --max-age 26h --drill-max-age 35d" "metrics"; do
  # shellcheck disable=SC2086 # c is a list of words
  "$bin" $c --db "$db" >/dev/null   # it works (set -e), and its pages are cached
  # shellcheck disable=SC2086
  printf '%-52s %7s ms  (target < 50 ms)\n' "planrun $c" "$(timed 7 "$bin" $c --db "$db")"
done

# The store's share of those commands, in process (no start-up): medians of 5.
out=$(PLANRUN_BENCH_DB=$db go test ./engine/store -run '^$' -bench HistoryQueries -benchtime 50x -count 5)
for q in runs runs-plan show-prefix status metrics; do
  v=$(echo "$out" | awk -v q="BenchmarkHistoryQueries/$q-" 'index($1, q) == 1 {print $3 / 1e6}' | median)
  printf '%-52s %7.2f ms  (store queries only)\n' "  in process: $q" "$v"
done

# prune: 4 plans x 25 000 runs, keep each plan's newest 2 500 -> 90 000
# runs go with their attempts and log files, then the store is vacuumed.
# Once: it changes the store (copying 100 000 log files for a second try
# would cost more than the prune).
keep=$((n / 40))
t0=$(date +%s%N)
"$bin" history prune --keep-days 0 --keep-runs "$keep" --db "$db" > "$dir/prune.out"
ms=$((($(date +%s%N) - t0) / 1000000))
left=$(find "$dir/full/logs" -type f | wc -l)
printf '%-52s %7s ms  (%s)\n' "planrun history prune of $((n * 9 / 10)) runs" "$ms" "$(head -1 "$dir/prune.out")"
printf '%-52s %7s     (%s log files left, store now %s)\n' "" "" "$left" "$(du -h "$db" | cut -f1)"
