#!/usr/bin/env bash
# scripts/bench-fleet.sh — the central (PostgreSQL) run store of a fleet.
#   1. engine overhead per step: a 100-step plan of `exec true` recorded
#      in the host's SQLite store, and recorded as planrun does with
#      PLANRUN_DB=postgres://… (the local SQLite record first, then the
#      central store over loopback), each against 100 bare fork/execs of
#      `true` (target: PostgreSQL < 2 ms per step over the bare spawn);
#   2. planrun status --all over 100 hosts x 1 000 runs (scripts/fillstore
#      into a fresh database): median wall time of 7 runs of the whole
#      process (target < 100 ms), and the store's query alone in process
#      on PostgreSQL and SQLite.
# Needs the test services' PostgreSQL (scripts/testenv.sh env when unset).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
[ -n "${DATABASE_URL:-}" ] || eval "$(scripts/testenv.sh env)"
bin=${PLANRUN_BIN:-$PWD/bin/planrun}
[ -x "$bin" ] || go build -trimpath -o "$bin" ./cmd/planrun
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "== engine overhead per step by run store (go test -bench, 9 runs each; medians) =="
out=$(go test ./cmd/planrun -run '^$' -bench 'Apply100ExecTrue$|Apply100ExecTrueCentral$|BareExec100True$' -benchtime 20x -count 9)
metric() { echo "$out" | grep "^Benchmark$1-" | awk -v u="$2" '{for (i=1;i<=NF;i++) if ($(i+1)==u) print $i}' | median; }
s=$(metric Apply100ExecTrue ms/step)
p=$(metric Apply100ExecTrueCentral ms/step)
e=$(metric BareExec100True ms/step)
printf '%-56s %10s\n' "measure" "median"
printf '%-56s %8.3f ms\n' "bare fork/exec of true" "$e"
printf '%-56s %8.3f ms  (overhead %.3f ms)\n' "exec true per step, SQLite store" "$s" "$(echo "$s - $e" | bc -l)"
printf '%-56s %8.3f ms  (overhead %.3f ms; target < 2 ms)\n' "exec true per step, central PostgreSQL (+ local record)" "$p" "$(echo "$p - $e" | bc -l)"
echo

db=planrun_bench_fleet_$$
admin=$DATABASE_URL
url=$(echo "$DATABASE_URL" | sed -E "s#/[^/?]*(\?|$)#/$db\1#")
psql -q "$admin" -c "CREATE DATABASE $db"
trap 'psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
start=$(date +%s%N)
go run ./scripts/fillstore -db "$url" -runs 100000 -hosts 100 -plans 2
fill_ms=$((($(date +%s%N) - start) / 1000000))
# What autovacuum does within a minute of such a load: without statistics
# the planner scans instead of seeking (~0.5 s instead of ~0.1 s).
psql -q "$url" -c "ANALYZE"
timed() {
  local reps=$1 i t0; shift
  for i in $(seq "$reps"); do
    t0=$(date +%s%N)
    "$@" >/dev/null || true   # status exits 1 when a plan is stale
    echo $((($(date +%s%N) - t0) / 1000))
  done | median | awk '{printf "%.1f", $1 / 1000}'
}
rows=$(PLANRUN_DB=$url "$bin" status --all | wc -l)
printf '== fleet: 100 hosts x 1 000 runs in PostgreSQL (filled in %.1f s; status --all prints %d lines)\n' \
  "$(echo "$fill_ms / 1000" | bc -l)" "$rows"
printf '%-56s %7s ms  (included below)\n' "planrun version (process start-up)" "$(timed 7 "$bin" version)"
printf '%-56s %7s ms  (any client: process, connection, one query)\n' "psql -c 'SELECT 1'" "$(timed 7 psql -q "$url" -Atc 'SELECT 1')"
printf '%-56s %7s ms  (start-up, connection, one query)\n' "planrun runs --all --limit 1" "$(PLANRUN_DB=$url timed 7 "$bin" runs --all --limit 1)"
printf '%-56s %7s ms  (target < 100 ms)\n' "planrun status --all" "$(PLANRUN_DB=$url timed 7 "$bin" status --all)"
printf '%-56s %7s ms\n' "planrun status --all --max-age 26h" "$(PLANRUN_DB=$url timed 7 "$bin" status --all --max-age 26h)"
# The store's query alone, in process, on each backend (the benchmark
# seeds its own 100 x 1 000 runs, 4 plans each host).
out=$(go test ./engine/store -run '^$' -bench 'FleetSummaries' -benchtime 30x -count 1)
for be in postgres sqlite; do
  v=$(echo "$out" | awk -v q="BenchmarkFleetSummaries/$be-" 'index($1, q) == 1 {for (i=1;i<=NF;i++) if ($(i+1)=="ms/op") print $i}')
  printf '%-56s %7.2f ms  (store query only)\n' "  in process: fleet summaries, $be" "$v"
done
